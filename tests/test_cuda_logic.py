"""The logic of the code that only a GPU runs, tested on a CPU: a training state spread over two
devices, the device and backend choices, per-block compilation with the per-layer attention scale,
MFU per device, resuming without RNG state and across dtypes, float16 with its GradScaler, no
host-to-device copy in the step, the clip coefficient's dtype, the GPU's label-sampling chunks and
fused optimizer step, Sophia-H's Hessian batch. docs/testing.md maps each CUDA-only branch to its test."""

import json
from types import SimpleNamespace

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

import checkpoint
import optimizers
import sophia
import timing
import train
from errors import UserError
from model import GPT, GPTConfig
from parallel import choose_backend, choose_device, global_norm
from tests.helpers import REPO, deterministic, metrics_rows, run_train, same, straight_and_resumed, tiny_args


def test_a_state_on_two_devices_is_checked_device_by_device():
    """CUDA parameters beside an optimizer's CPU `step` counters: one reduction per device (the meta
    device stands in for the GPU; stacking norms of two devices raises)."""
    cpu = [torch.ones(3), torch.tensor(0.0)]
    with pytest.raises(RuntimeError, match="device"):
        torch.stack(torch._foreach_norm(cpu + [torch.ones(2, device="meta")]))
    flags = checkpoint.finite_by_device(cpu + [torch.ones(2, device="meta"), torch.ones(2, dtype=torch.int64)])
    assert set(flags) == {torch.device("cpu"), torch.device("meta")} and bool(flags[torch.device("cpu")])
    assert checkpoint.non_finite([torch.ones(3), torch.tensor([1.0, float("nan")])])
    assert not checkpoint.non_finite([torch.ones(3), torch.tensor(1.0), torch.zeros(0)])


def test_the_device_always_has_an_index():
    """torch.cuda.set_device raises on torch.device('cuda'): the chosen CUDA device is numbered."""
    assert choose_device("cuda", True) == torch.device("cuda", 0)  # one GPU, no torchrun
    assert choose_device("auto", True, local_rank=3, world_size=8) == torch.device("cuda", 3)
    assert choose_device("cuda", True, local_rank=5, world_size=8) == torch.device("cuda", 5)
    assert choose_device("cuda:1", True) == torch.device("cuda", 1)
    assert choose_device("auto", False) == torch.device("cpu")
    assert choose_device("mps", False) == torch.device("mps")
    for name, cuda, world, message in [
        ("cuda", False, 1, "not available"),
        ("cuda:2", True, 4, "all 4 ranks on one GPU"),
        ("gpu", True, 1, "use 'auto', 'cpu'"),
    ]:
        with pytest.raises(UserError, match=message):
            choose_device(name, cuda, world_size=world)
    assert choose_backend("auto", torch.device("cuda", 0)) == "nccl"
    assert choose_backend("auto", torch.device("cpu")) == "gloo"
    assert choose_backend("gloo", torch.device("cuda", 0)) == "gloo"


def test_per_layer_attention_scale_compiles_one_graph_for_every_block_under_fsdp(shakespeare_char, tmp_path):
    """FSDP compiles block by block; a per-block float would make one graph per layer (and run the
    blocks past torch's recompile limit of 8 eagerly). A 10-layer model after a 2-layer one, both with
    the scale on, in one process: the 10-layer run compiles nothing new."""
    common = dict(
        parallelism="fsdp",
        compile=True,
        scale_attn_by_inverse_layer_idx=True,
        max_iters=1,
        eval_interval=1,
        hess_interval=1,
        optimizer_name="adamw",
    )
    runs = [tiny_args(shakespeare_char, tmp_path / f"layers{n}", n_layer=n, **common) for n in (2, 10)]
    (tmp_path / "runs.json").write_text(json.dumps(runs))
    run_train([str(tmp_path / "runs.json"), str(tmp_path / "graphs")], script=REPO / "tests" / "runs_harness.py")
    two_layers, ten_layers = json.loads((tmp_path / "graphs0.json").read_text())
    assert ten_layers == two_layers


def test_the_scale_on_q_is_the_per_layer_softmax_scale():
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(n_layer=3, n_head=2, n_embd=16, block_size=8, vocab_size=11, scale_attn_by_inverse_layer_idx=True)
    )
    attn, x = model.transformer.h[2].attn, torch.randn(2, 8, 16)
    q, k, v = (t.view(2, 8, 2, 8).transpose(1, 2) for t in attn.c_attn(x).split(16, dim=2))
    y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1 / 3 / 8**0.5)
    torch.testing.assert_close(attn(x), attn.c_proj(y.transpose(1, 2).reshape(2, 8, 16)))
    assert "transformer.h.2.attn.inv_layer" not in model.state_dict()  # checkpoints and exports unchanged


def test_mfu_is_per_device_and_the_peak_follows_the_device_name(monkeypatch):
    # 8 GPUs together process 8,000 tokens/s of 100 FLOPs: 1e5 FLOP/s each, half of a 2e5 peak
    assert timing.mfu(100, 8000, 1.0, 8, 2e5) == pytest.approx(0.5)
    assert timing.mfu(100, 8000, 1.0, 8, None) is None
    assert timing.peak_flops(torch.device("cpu")) is None and timing.peak_flops(torch.device("cpu"), 5.0) == 5.0
    for name, peak in [
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H100 NVL", 835e12),
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H200", 989e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA L4", None),
    ]:
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device, name=name: name)
        assert timing.peak_flops(torch.device("cuda", 0)) == peak, name


def test_a_checkpoint_holds_no_rng_state_and_one_that_does_still_resumes(shakespeare_char, tmp_path):
    """Every draw is reseeded from (seed, iteration, micro-batch): nothing to restore, so a checkpoint
    written on 8 GPUs (8 CUDA RNG states) resumes on a machine with fewer, or none."""
    train.main(tiny_args(shakespeare_char, tmp_path / "run", max_iters=4, eval_interval=2))
    path = checkpoint.checkpoint_paths(tmp_path / "run")[0]
    ckpt = torch.load(path, weights_only=True)
    assert "rng" not in ckpt
    ckpt["rng"] = {"cuda": [torch.zeros(16, dtype=torch.uint8)] * 8}  # as older checkpoints carry it
    checkpoint.write_file(ckpt, path)
    train.main(tiny_args(shakespeare_char, tmp_path / "run", max_iters=6, eval_interval=2, init_from="resume"))
    assert metrics_rows(tmp_path / "run")[-1]["iter"] == 6


FP16 = dict(dtype="float16", max_iters=8, eval_interval=4, lr_decay_iters=8, hess_interval=3, dropout=0.1)


class HugeScale(torch.amp.GradScaler):
    """A GradScaler that starts at 2^24: the first steps overflow float16 and are skipped."""

    def __init__(self, device, enabled=True):
        super().__init__(device, init_scale=2.0**24, enabled=enabled)


def test_float16_trains_skips_overflows_and_resumes_exactly(shakespeare_char, tmp_path, monkeypatch):
    """--dtype=float16 on a CPU (float16 autocast, GradScaler('cpu')): overflowing steps are skipped
    and halve the loss scale, the scale is checkpointed, and a run stopped and resumed halfway is
    the uninterrupted one bit for bit."""
    monkeypatch.setattr(torch.amp, "GradScaler", HugeScale)
    straight, split, a, b = straight_and_resumed(shakespeare_char, tmp_path, **FP16)
    assert json.loads((tmp_path / "straight" / "config.json").read_text())["dtype_resolved"] == "float16"
    skipped = [r["skipped_steps"] for r in straight if "skipped_steps" in r]
    assert 0 < skipped[-1] < 8
    assert a["scaler"]["scale"] < 2.0**24
    logs = [r for r in straight if "train/loss" in r and r["train/loss"] is not None]
    assert logs[-1]["train/loss"] < logs[0]["train/loss"]
    assert deterministic(straight) == deterministic(split)
    for key in ("model", "optimizer", "scaler", "iter", "skipped_steps"):
        assert same(a[key], b[key]), key


def test_float16_continues_a_float32_checkpoint(shakespeare_char, tmp_path, capsys):
    train.main(tiny_args(shakespeare_char, tmp_path / "run", max_iters=2, eval_interval=2))
    train.main(
        tiny_args(shakespeare_char, tmp_path / "run", max_iters=4, eval_interval=2, dtype="float16", init_from="resume")
    )
    assert "has no fp16 loss scale" in capsys.readouterr().out
    assert torch.load(checkpoint.checkpoint_paths(tmp_path / "run")[0], weights_only=True)["scaler"]["scale"] > 0


def test_float16_hessian_refresh_leaves_the_loss_scale_alone(shakespeare_char, tmp_path, monkeypatch):
    """The refresh is no optimizer step: it unscales by hand, so the GradScaler's growth tracker
    counts training steps only."""
    refresh, seen = train.refresh_hessian, []

    def watched(run, it):
        before = run.scaler.state_dict()
        result = refresh(run, it)
        seen.append((before, run.scaler.state_dict(), result))
        return result

    monkeypatch.setattr(train, "refresh_hessian", watched)
    train.main(tiny_args(shakespeare_char, tmp_path / "run", dtype="float16", max_iters=4, eval_interval=4))
    assert len(seen) == 2 and all(before == after and ok for before, after, ok in seen)


def test_the_step_copies_no_python_value_to_the_device(shakespeare_char, tmp_path, monkeypatch):
    """torch.tensor(value, device=cuda) is a blocking copy: the step builds none (the SIGTERM flag is
    a fill on the device)."""
    in_step, made = [False], []
    tensor, step = torch.tensor, train.train_step

    def spy(*args, **kwargs):
        if in_step[0] and kwargs.get("device") is not None:
            made.append(args)
        return tensor(*args, **kwargs)

    def watched(run, it):
        in_step[0] = True
        try:
            return step(run, it)
        finally:
            in_step[0] = False

    monkeypatch.setattr(torch, "tensor", spy)
    monkeypatch.setattr(train, "train_step", watched)
    train.main(tiny_args(shakespeare_char, tmp_path / "run", max_iters=3, eval_interval=3, log_interval=1))
    assert made == []


def test_the_clip_coefficient_has_the_gradients_dtype_and_clips_as_torch_does(monkeypatch):
    """A float64 coefficient on float32 gradients sends CUDA's _foreach_mul_ to one kernel per tensor:
    it is cast first, and the gradients come out as torch's clip_grads_with_norm_ makes them."""
    torch.manual_seed(0)
    grads = [torch.randn(5, 3) * 10, torch.randn(4) * 10]

    def params():
        ps = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
        for p, g in zip(ps, grads):
            p.grad = g.clone()
        return ps

    reference, ours = params(), params()
    torch.nn.utils.clip_grads_with_norm_(reference, 1.0, global_norm(grads))
    scalars, mul = [], torch._foreach_mul_
    monkeypatch.setattr(torch, "_foreach_mul_", lambda ts, s: (scalars.append(s), mul(ts, s))[1])
    norm = train.clip_gradients(SimpleNamespace(raw_model=torch.nn.ParameterList(ours)), 1.0)
    assert norm.dtype == torch.float64 and norm > 1
    assert [s.dtype for s in scalars] == [torch.float32]
    for p, r in zip(ours, reference):
        assert torch.equal(p.grad, r.grad)


def test_label_sampling_takes_large_chunks_on_a_gpu():
    """~5 launches per chunk on a GPU: a GPT-2 micro-batch (12 x 1024 positions) in 10 chunks, not 149."""
    positions, vocab = 12 * 1024, 50304
    for device, chunks in [("cpu", 149), ("cuda", 10)]:
        rows = sophia._sample_rows(vocab, torch.device(device))
        assert -(-positions // rows) == chunks


def test_the_fused_step_is_the_default_on_cuda_and_purely_elementwise():
    """Each fused Sophia update is one elementwise kernel over the whole parameter (a reduction in it
    would make Inductor emit one program walking the tensor); AdamW and Sophia take it on CUDA."""
    graph = make_fx(sophia._fused_update)(*[torch.ones(8)] * 4, 0.965, 1e-4, 0.04, 0.1, 1e-15).graph
    ops = {str(node.target) for node in graph.nodes if node.op == "call_function"}
    assert not any(op.startswith(("aten.sum", "aten.amax", "aten.mean", "aten.max")) for op in ops), ops
    model = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=4, vocab_size=5))
    for name in ("adamw", "sophiag"):
        cfg = train.TrainConfig(optimizer_name=name)
        assert optimizers.make_optimizer(cfg, model, torch.device("cuda", 0)).defaults["fused"] is True
        assert not optimizers.make_optimizer(cfg, model, torch.device("cpu")).defaults["fused"]


def test_sophia_h_refresh_draws_the_hessian_batch(shakespeare_char, tmp_path, monkeypatch):
    get_batch, sizes = train.get_batch, []

    def spy(path, seed, stream, it, index, batch_size, *rest):
        if stream == train.HESSIAN:
            sizes.append(batch_size)
        return get_batch(path, seed, stream, it, index, batch_size, *rest)

    monkeypatch.setattr(train, "get_batch", spy)
    train.main(
        tiny_args(
            shakespeare_char,
            tmp_path / "run",
            optimizer_name="sophiah",
            hess_total_batch_size=2,
            max_iters=2,
            eval_interval=2,
        )
    )
    assert sizes == [2]  # hess_total_batch_size: one micro-batch of 2 sequences, not batch_size=4


def test_auto_dtype_is_bfloat16_on_a_gpu_that_has_it(monkeypatch):
    for supported, dtype in [(True, "bfloat16"), (False, "float32")]:
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, supported=supported, **kwargs: supported)
        assert train.resolve_dtype("auto", torch.device("cuda", 0)) == dtype
    assert train.resolve_dtype("auto", torch.device("cpu")) == "float32"
    assert train.resolve_dtype("float16", torch.device("cpu")) == "float16"
