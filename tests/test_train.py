"""The training loop: it learns with every optimizer, logs what it promises, and a run split by a
resume or across two DDP ranks reproduces the single uninterrupted run."""

import dataclasses
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import optimizers
import train
from errors import UserError
from tests.helpers import REPO, deterministic, metrics_rows, run_train, straight_and_resumed, tiny_args

SOPHIA_KEYS = {"train/win_rate", "optim/hessian_norm"}
TRAIN_KEYS = {
    "iter",
    "tokens_seen",
    "time_s",
    "train/loss",
    "lr",
    "grad_norm",
    "param_norm",
    "mfu",
    "ms_per_iter",
    "tokens_per_s",
    "train/clip_rate",
    "skipped_steps",
}
SPIKE_KEYS = {"spike/skipped_steps", "spike/rollbacks", "spike/data_offset"}
SPIKE_STATS = {f"spike/{s}_{k}" for s in ("loss", "grad_norm") for k in ("mean", "std", "z")}
EVAL_KEYS = {"iter", "tokens_seen", "time_s", "val/loss", "eval/train_loss"}


@pytest.mark.parametrize("optimizer", ["sophiag", "sophiah", "adamw", "lion"])
def test_each_optimizer_learns_and_logs_every_key(optimizer, shakespeare_char, tmp_path):
    lr = {"sophiag": 1e-2, "sophiah": 1e-2, "adamw": 1e-2, "lion": 3e-3}[optimizer]
    out = tmp_path / optimizer
    train.main(
        tiny_args(
            shakespeare_char,
            out,
            optimizer_name=optimizer,
            learning_rate=lr,
            max_iters=40,
            eval_interval=20,
            warmup_iters=4,
        )
    )
    rows = metrics_rows(out)
    evals = [r for r in rows if "val/loss" in r]
    logs = [r for r in rows if "train/loss" in r]
    assert [r["iter"] for r in evals] == [0, 20, 40]
    assert [r["iter"] for r in logs] == list(range(1, 41))
    # from ln(80) = 4.38 (80 characters) at initialisation to well below it (3.26-3.30 measured)
    assert evals[0]["val/loss"] > 4.3
    assert evals[-1]["val/loss"] < evals[0]["val/loss"] - 0.8
    expected = (
        TRAIN_KEYS | SPIKE_KEYS | (SOPHIA_KEYS | {"spike/skipped_hessian"} if optimizer.startswith("sophia") else set())
    )
    for r in logs:  # the spike guard's window has a spread from its 2nd value on
        keys = expected | (SPIKE_STATS if r["iter"] > 2 else set())
        assert keys <= set(r), keys - set(r)
    assert all(EVAL_KEYS <= set(r) for r in evals)
    tokens_per_iter = 8 * 32
    hessian_tokens = 8 * 32 if optimizer.startswith("sophia") else 0
    assert logs[-1]["tokens_seen"] == 40 * tokens_per_iter + (40 // 2) * hessian_tokens
    if optimizer.startswith("sophia"):
        assert all(0.0 <= r["train/win_rate"] <= 1.0 for r in logs)
        assert logs[-1]["optim/hessian_norm"] > 0
    config = json.loads((out / "config.json").read_text())
    assert config["optimizer_name"] == optimizer and config["grad_accum"] == 2


def test_resume_is_bit_for_bit(shakespeare_char, tmp_path):
    """10 iterations straight == 5 iterations, stop, resume, 5 more (Sophia-G with Hessian refreshes
    and dropout, so the data, the sampled labels and the dropout masks all have to line up)."""
    common = dict(max_iters=10, eval_interval=5, dropout=0.1, hess_interval=3, lr_decay_iters=10)
    straight, split, a, b = straight_and_resumed(shakespeare_char, tmp_path, **common)
    assert deterministic(straight) == deterministic(split)
    assert a["iter"] == b["iter"] == 10 and a["tokens_seen"] == b["tokens_seen"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for s_a, s_b in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        for k in ("exp_avg", "hessian"):
            assert torch.equal(s_a[k], s_b[k])


def test_ddp_two_ranks_match_one_process_with_twice_the_accumulation(shakespeare_char, tmp_path):
    """torchrun --nproc_per_node=2 (gloo) == one process: the same global batch, split differently."""
    common = dict(max_iters=6, eval_interval=3, hess_interval=2, batch_size=4, total_batch_size=8)
    run_train(tiny_args(shakespeare_char, tmp_path / "one", **common))
    run_train(tiny_args(shakespeare_char, tmp_path / "two", **common), nproc=2)
    one, two = metrics_rows(tmp_path / "one"), metrics_rows(tmp_path / "two")
    assert json.loads((tmp_path / "two" / "config.json").read_text())["grad_accum"] == 1
    assert json.loads((tmp_path / "one" / "config.json").read_text())["grad_accum"] == 2
    assert [r["iter"] for r in one] == [r["iter"] for r in two]
    for r1, r2 in zip(one, two):
        for k in (
            "train/loss",
            "val/loss",
            "eval/train_loss",
            "grad_norm",
            "train/win_rate",
            *(k for k in r1 if k.startswith("group/")),
        ):
            if k in r1:
                assert r2[k] == pytest.approx(r1[k], rel=1e-5, abs=1e-6), (r1["iter"], k)


def test_batches_are_a_pure_function_of_seed_iteration_and_index(shakespeare):
    path = shakespeare / "train.bin"
    cpu = torch.device("cpu")
    a = train.get_batch(path, 1, train.TRAIN, 7, 3, 4, 16, cpu)
    b = train.get_batch(path, 1, train.TRAIN, 7, 3, 4, 16, cpu)
    c = train.get_batch(path, 1, train.TRAIN, 7, 4, 4, 16, cpu)
    d = train.get_batch(path, 1, train.HESSIAN, 7, 3, 4, 16, cpu)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[0], d[0])
    assert torch.equal(a[0][:, 1:], a[1][:, :-1])  # targets are the inputs shifted by one
    data = np.memmap(path, dtype=np.uint16, mode="r")
    assert int(a[0].max()) < 50257 and len(data) > 1_000_000


def test_lr_schedule_warms_up_then_decays_to_min_lr():
    cfg = train.TrainConfig(learning_rate=1.0, warmup_iters=10, max_iters=110)
    lrs = [train.lr_at(it, cfg) for it in range(120)]
    assert lrs[0] == pytest.approx(1 / 11) and lrs[9] == pytest.approx(10 / 11)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.05 + 0.95 * 0.5)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[110] == lrs[119] == pytest.approx(0.05)  # min_lr defaults to learning_rate / 20


def test_resolve_derives_every_value_without_processes():
    cpu = torch.device("cpu")
    cfg = train.TrainConfig(
        batch_size=4, total_batch_size=16, hess_total_batch_size=4, block_size=32, dataset="shakespeare"
    )
    plan = train.resolve(cfg, 2, cpu)
    # 16 sequences = 2 ranks x 2 micro-steps x 4; the Hessian's 4 = 2 ranks x 1 micro-step x 2
    assert (plan.grad_accum, plan.tokens_per_iter) == (2, 16 * 32)
    assert (plan.hess_batch_size, plan.hess_micro, plan.hess_tokens) == (2, 1, 4 * 32)
    assert (plan.dtype, plan.compile, plan.fused, plan.tf32) == ("float32", False, False, False)  # 'auto'/None on a CPU
    assert (cfg.final_min_lr, cfg.final_lr_decay_iters) == (cfg.learning_rate / 20, cfg.max_iters)
    assert plan.data_dir == train.REPO / "data" / "shakespeare"
    with pytest.raises(UserError, match=r"total_batch_size=16 is not divisible by batch_size \* world_size = 4 \* 3"):
        train.resolve(cfg, 3, cpu)
    assert train.resolve(train.TrainConfig(dtype="float16"), 1, cpu).dtype == "float16"  # a GradScaler("cpu")
    # on CUDA (a device object needs no GPU): compiled, fused optimizer step, TF32 matmuls
    gpu = train.resolve(train.TrainConfig(dtype="float32"), 1, torch.device("cuda", 0))
    assert (gpu.compile, gpu.fused, gpu.tf32) == (True, True, True)


def test_help_prints_every_key_with_its_default_and_comment(capsys):
    with pytest.raises(SystemExit) as exit_:
        train.parse_args(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and out.startswith("usage: python train.py")
    assert all(f"--{f.name}=" in out for f in dataclasses.fields(train.TrainConfig))
    assert any(
        line.split() == ["--eval_iters=200", "batches", "per", "split", "in", "each", "evaluation"]
        for line in out.splitlines()
    )


def test_lion_matches_its_definition():
    torch.manual_seed(0)
    p = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    ref, m = p.detach().clone(), torch.zeros(5, 3, dtype=torch.float64)
    opt = optimizers.Lion([p], lr=0.1, betas=(0.9, 0.99), weight_decay=0.5)
    for _ in range(4):
        g = torch.randn(5, 3, dtype=torch.float64)
        p.grad = g.clone()
        opt.step()
        ref = ref * (1 - 0.1 * 0.5) - 0.1 * torch.sign(0.9 * m + 0.1 * g)
        m = 0.99 * m + 0.01 * g
        assert torch.allclose(p.detach(), ref, rtol=0, atol=1e-12)


def test_weight_decay_only_on_matrices_and_embeddings():
    cfg = train.TrainConfig(optimizer_name="adamw", n_layer=1, n_head=2, n_embd=8, block_size=8, bias=True)
    model = train.build_model(cfg)
    decay, no_decay = optimizers.make_optimizer(cfg, model, torch.device("cpu")).param_groups
    assert decay["weight_decay"] == cfg.weight_decay and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_module_imports_without_side_effects():
    out = subprocess.run(
        [sys.executable, "-c", "import train, sys; print(len(sys.argv))"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "RANK": "", "WORLD_SIZE": ""},
    )
    assert out.returncode == 0 and out.stdout.strip() == "1"


def test_model_forward_gives_logits_everywhere_and_the_loss():
    from model import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=100, n_layer=2, n_head=2, n_embd=16))
    idx = torch.randint(0, 100, (3, 16))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 16, 100)
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits.view(-1, 100), idx.view(-1)).item())
    assert loss.item() == pytest.approx(math.log(100), rel=0.1)
    assert model(idx)[1] is None
    assert model.transformer.wte.weight is model.lm_head.weight
    out = model.generate(idx[:1, :4], 5, temperature=0)
    assert out.shape == (1, 9) and torch.equal(out[:, :4], idx[:1, :4])


def test_sample_generates_text_from_a_checkpoint(shakespeare, tmp_path):
    train.main(tiny_args(shakespeare, tmp_path / "run", max_iters=2, eval_interval=2))
    out = subprocess.run(
        [
            sys.executable,
            "sample.py",
            f"--out_dir={tmp_path / 'run'}",
            "--start=ROMEO:",
            "--num_samples=2",
            "--max_new_tokens=8",
            "--device=cpu",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    samples = out.stdout.split("---------------\n")
    assert len(samples) == 3 and all(s.startswith("ROMEO:") for s in samples[:2])
    missing = subprocess.run(
        [sys.executable, "sample.py", f"--out_dir={tmp_path / 'none'}"], cwd=REPO, capture_output=True, text=True
    )
    assert (
        missing.returncode != 0
        and missing.stderr.strip()
        == f"error: no checkpoint in {tmp_path / 'none'}: train first, or pass --init_from=gpt2"
    )


def test_train_state_keeps_the_checkpoint_keys():
    """The loop state's state_dict() has the keys checkpoints have always carried (old ones resume), and
    load_state_dict() takes a subset of them (an older checkpoint lacks the newer keys)."""
    keys = [
        "iter",
        "tokens_seen",
        "time_s",
        "best_val_loss",
        "last_eval_iter",
        "skipped_steps",
        "clipped_steps",
        "skipped_hessian",
        "wandb_run_id",
        "spike_skipped_steps",
        "spike_skipped_hessian",
        "rollbacks",
        "rollback_batches",
        "spike_guard",
    ]
    assert list(train.TrainState().state_dict()) == keys
    state = train.TrainState()
    state.load_state_dict({"iter": 5, "rollbacks": 1})
    assert state == train.TrainState(iter=5, rollbacks=1)
