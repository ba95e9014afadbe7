"""optimizer_name='muon': its two parts are exactly torch.optim.Muon and torch.optim.AdamW on the right
parameters, following the lr schedule; and to the loop it is one optimizer (state_dict, GradScaler,
resume bit for bit, DDP, the non-finite guard, config errors)."""

import copy
import io
import sys

import pytest
import torch

import optimizers
import train
from tests.helpers import REPO, deterministic, metrics_rows, run_train, straight_and_resumed, tiny_args

# Not the defaults, so that a key wired to the wrong place shows.
HYPER = dict(
    optimizer_name="muon",
    learning_rate=0.05,
    weight_decay=0.1,
    muon_momentum=0.9,
    muon_adamw_lr=4e-3,
    muon_adamw_weight_decay=0.2,
    beta1=0.8,
    beta2=0.9,
    warmup_iters=2,
    max_iters=6,
    min_lr=0.005,
)


def tiny_model_and_cfg(**overrides):
    cfg = train.TrainConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, bias=True, **{**HYPER, **overrides})
    torch.manual_seed(0)
    return train.build_model(cfg), cfg


def random_grads(model, seed):
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen)


def take_step(model, optimizer, cfg, it):
    random_grads(model, it)
    optimizers.set_lr(optimizer, train.lr_at(it, cfg))
    optimizer.step()


@pytest.mark.parametrize("adjust_lr_fn", ["original", "match_rms_adamw"])
def test_parts_are_torch_muon_on_block_matrices_and_torch_adamw_on_the_rest(adjust_lr_fn):
    model, cfg = tiny_model_and_cfg(muon_adjust_lr_fn=adjust_lr_fn)
    optimizer = optimizers.make_optimizer(cfg, model, torch.device("cpu"))
    names = {id(p): n for n, p in model.named_parameters()}
    muon_group, decay, no_decay = optimizer.param_groups
    block_matrices = {
        f"transformer.h.{i}.{m}.weight"
        for i in range(2)
        for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    }
    assert {names[id(p)] for p in muon_group["params"]} == block_matrices
    assert {names[id(p)] for p in decay["params"]} == {"transformer.wte.weight", "transformer.wpe.weight"}
    assert all(p.dim() == 1 for p in no_decay["params"])  # norm gains and biases
    assert len(muon_group["params"]) + len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))

    reference = copy.deepcopy(model)
    ref = dict(reference.named_parameters())
    ref_muon = torch.optim.Muon(
        [ref[n] for n in sorted(block_matrices)],
        lr=cfg.learning_rate,
        weight_decay=0.1,
        momentum=0.9,
        nesterov=True,
        adjust_lr_fn=adjust_lr_fn,
    )
    ref_adamw = torch.optim.AdamW(
        [
            {"params": [ref["transformer.wte.weight"], ref["transformer.wpe.weight"]], "weight_decay": 0.2},
            {"params": [p for p in reference.parameters() if p.dim() == 1], "weight_decay": 0.0},
        ],
        lr=4e-3,
        betas=(0.8, 0.9),
        foreach=True,
    )
    for it in range(cfg.max_iters):  # warmup, peak, cosine decay
        take_step(model, optimizer, cfg, it)
        random_grads(reference, it)
        lr = train.lr_at(it, cfg)
        for group in ref_muon.param_groups:
            group["lr"] = lr
        for group in ref_adamw.param_groups:
            group["lr"] = lr * (4e-3 / 0.05)
        ref_muon.step()
        ref_adamw.step()
        for n, p in model.named_parameters():
            assert torch.equal(p, ref[n]), (it, n)
    optimizers.set_lr(optimizer, cfg.learning_rate)  # the peak: each part at its own peak lr
    assert muon_group["lr"] == 0.05 and decay["lr"] == no_decay["lr"] == pytest.approx(4e-3)


def test_state_dict_round_trip_continues_exactly_like_the_uninterrupted_optimizer():
    model, cfg = tiny_model_and_cfg()
    optimizer = optimizers.make_optimizer(cfg, model, torch.device("cpu"))
    for it in range(3):
        take_step(model, optimizer, cfg, it)
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)  # as a checkpoint holds it, loaded as read_checkpoint does
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    kinds = {tuple(sorted(s)) for s in saved["state"].values()}
    assert kinds == {("momentum_buffer",), ("exp_avg", "exp_avg_sq", "step")}

    resumed_model = copy.deepcopy(model)
    resumed = optimizers.make_optimizer(cfg, resumed_model, torch.device("cpu"))
    resumed.load_state_dict(saved)
    for it in range(3, cfg.max_iters):
        take_step(model, optimizer, cfg, it)
        take_step(resumed_model, resumed, cfg, it)
    for p, q in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(p, q)
    for s, t in zip(optimizer.state.values(), resumed.state.values()):
        assert all(torch.equal(s[k], t[k]) for k in s)


def test_grad_scaler_unscales_both_parts_and_skips_a_step_with_an_inf():
    model, cfg = tiny_model_and_cfg()
    optimizer = optimizers.make_optimizer(cfg, model, torch.device("cpu"))
    reference = copy.deepcopy(model)
    ref_optimizer = optimizers.make_optimizer(cfg, reference, torch.device("cpu"))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    for it in range(4):
        x = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(it))
        optimizers.set_lr(optimizer, train.lr_at(it, cfg))
        scaler.scale(model(x, x)[1]).backward()
        if it == 2:
            model.transformer.h[0].mlp.c_fc.weight.grad[0, 0] = float("inf")
        before = copy.deepcopy(optimizer.state_dict()["state"])
        scaler.unscale_(optimizer)  # as train.grad_norm does, before clipping
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
        if it == 2:  # skipped: neither part moved, and the scale backed off
            assert scaler.get_scale() == 2.0**9
            after = optimizer.state_dict()["state"]
            assert all(torch.equal(before[i][k], after[i][k]) for i in after for k in after[i])
            continue
        optimizers.set_lr(ref_optimizer, train.lr_at(it, cfg))
        reference(x, x)[1].backward()  # unscaled: scaling by a power of 2 and back is exact
        ref_optimizer.step()
        ref_optimizer.zero_grad()
        for p, q in zip(model.parameters(), reference.parameters()):
            assert torch.equal(p, q), it


def test_resume_through_train_py_is_bit_for_bit_and_it_learns(shakespeare_char, tmp_path):
    common = dict(
        optimizer_name="muon",
        learning_rate=0.02,
        muon_adamw_lr=1e-2,
        beta1=0.9,
        beta2=0.95,
        max_iters=10,
        eval_interval=5,
        dropout=0.1,
        lr_decay_iters=10,
    )
    straight, split, a, b = straight_and_resumed(shakespeare_char, tmp_path, **common)
    assert deterministic(straight) == deterministic(split)
    assert a["iter"] == b["iter"] == 10
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    for s, t in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert s.keys() == t.keys() and all(torch.equal(s[k], t[k]) for k in s)
    evals = [r["val/loss"] for r in straight if "val/loss" in r]
    assert evals[-1] < evals[0] - 0.8  # from ln(80) = 4.38, 80 characters (3.35 measured)


def test_ddp_two_ranks_match_one_process(shakespeare_char, tmp_path):
    common = dict(
        optimizer_name="muon",
        learning_rate=0.02,
        muon_adamw_lr=1e-2,
        max_iters=6,
        eval_interval=3,
        batch_size=4,
        total_batch_size=8,
    )
    run_train(tiny_args(shakespeare_char, tmp_path / "one", **common))
    run_train(tiny_args(shakespeare_char, tmp_path / "two", **common), nproc=2)
    one, two = metrics_rows(tmp_path / "one"), metrics_rows(tmp_path / "two")
    assert [r["iter"] for r in one] == [r["iter"] for r in two]
    for r1, r2 in zip(one, two):
        for k in ("train/loss", "val/loss", "eval/train_loss", "grad_norm", "param_norm"):
            if k in r1:
                assert r2[k] == pytest.approx(r1[k], rel=1e-5, abs=1e-6), (r1["iter"], k)


def test_non_finite_gradient_skips_the_step_of_both_parts(shakespeare, tmp_path, monkeypatch):
    bad = 3
    forward_backward, train_step, snapshots = train.forward_backward, train.train_step, {}

    def poisoned(run, loss_fn, stream, it, n_micro):
        loss = forward_backward(run, loss_fn, stream, it, n_micro)
        if it == bad:
            run.raw_model.transformer.h[0].attn.c_attn.weight.grad.view(-1)[0] = float("nan")
        return loss

    def watched(run, it):
        snapshots[it] = (
            [p.detach().clone() for p in run.raw_model.parameters()],
            copy.deepcopy(run.optimizer.state_dict()["state"]),
        )
        return train_step(run, it)

    monkeypatch.setattr(train, "forward_backward", poisoned)
    monkeypatch.setattr(train, "train_step", watched)
    train.main(
        tiny_args(shakespeare, tmp_path, optimizer_name="muon", learning_rate=0.02, max_iters=6, eval_interval=6)
    )
    (w3, s3), (w4, s4), (w2, _) = snapshots[bad], snapshots[bad + 1], snapshots[bad - 1]
    assert all(torch.equal(p, q) for p, q in zip(w3, w4))
    assert s3.keys() == s4.keys() and all(torch.equal(s3[i][k], s4[i][k]) for i in s3 for k in s3[i])
    assert not all(torch.equal(p, q) for p, q in zip(w2, w3))
    assert [r["skipped_steps"] for r in metrics_rows(tmp_path) if "train/loss" in r] == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize(
    "arg, message",
    [
        ("--muon_adjust_lr_fn=rms", "error: muon_adjust_lr_fn='rms': use 'original' or 'match_rms_adamw'"),
        ("--muon_momentum=1.0", "error: muon_momentum must be in [0, 1), got 1.0"),
        ("--muon_adamw_lr=0", "error: muon_adamw_lr must be > 0, got 0.0"),
        ("--muon_adamw_weight_decay=-1", "error: muon_adamw_weight_decay must be >= 0, got -1.0"),
        ("--muon_lr=0.02", "error: command line: unknown config key 'muon_lr'; did you mean"),
    ],
)
def test_bad_muon_setting_is_one_line_naming_the_fix(arg, message, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["train.py", str(REPO / "config" / "train_tiny_muon.py"), arg])
    assert train.cli() == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and len(err.splitlines()) == 1, err
