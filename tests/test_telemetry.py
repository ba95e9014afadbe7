"""Per-group telemetry (telemetry.py): every parameter has a group, the values are what their
definitions say, they are logged on logged steps only, and the groups' win rates add up to the
overall one. (Equal on 1 and 2 ranks, DDP and FSDP: tests/test_train.py and tests/test_fsdp.py.)"""

import pytest
import torch

import telemetry
import train
from model import GPT, GPTConfig
from optimizers import make_optimizer
from tests.helpers import metrics_rows, tiny_args


@pytest.mark.parametrize("bias", [False, True])
def test_every_parameter_of_the_gpt_has_a_group(bias):
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=11, bias=bias))
    groups = {telemetry.group_of(n) for n, _ in model.named_parameters()}
    assert groups == set(telemetry.GROUPS)
    with pytest.raises(ValueError, match="add its name"):
        telemetry.group_of("transformer.h.0.rotary.freqs")


@pytest.mark.parametrize("optimizer_name", ["sophiag", "adamw", "muon"])
def test_values_match_their_definitions(optimizer_name):
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=11))
    cfg = train.parse_args([f"--optimizer_name={optimizer_name}", "--learning_rate=1e-2", "--rho=0.03"])
    optimizer = make_optimizer(cfg, model, torch.device("cpu"))
    tele = telemetry.Telemetry(model, optimizer, cfg.is_sophia)
    for _ in range(2):
        x = torch.randint(0, 11, (4, 8))
        model(x, x)[1].backward()
        if cfg.is_sophia:
            optimizer.update_hessian(num_tokens=32)
        before = tele.snapshot()
        optimizer.step()
        optimizer.zero_grad()
    values = tele.measure(before)
    names = [(n, p) for n, p in model.named_parameters()]
    for group in telemetry.GROUPS:
        members = [(p, old) for (n, p), old in zip(names, before) if telemetry.group_of(n) == group]
        update = sum(((p - old) ** 2).sum().item() for p, old in members)
        weight = sum((old**2).sum().item() for _, old in members)
        assert values[f"group/{group}/update_ratio"] == pytest.approx((update / weight) ** 0.5, rel=1e-5)
        if cfg.is_sophia:
            state = [optimizer.state[p] for p, _ in members]
            numel = sum(p.numel() for p, _ in members)
            clipped = sum(((s["exp_avg"] / (s["hessian"] * 0.03 + 1e-15)).abs() >= 1).sum().item() for s in state)
            assert values[f"group/{group}/win_rate"] == pytest.approx(1 - clipped / numel, abs=1e-12)
            assert values[f"group/{group}/hessian_mean"] == pytest.approx(
                sum(s["hessian"].sum().item() for s in state) / numel, rel=1e-6
            )
    if cfg.is_sophia:  # the overall values are SophiaG.stats()'s
        assert values.pop("train/win_rate") == pytest.approx(optimizer.stats()["win_rate"].item(), abs=1e-12)
        assert values.pop("optim/hessian_norm") == pytest.approx(optimizer.stats()["hessian_norm"].item(), rel=1e-12)
    assert all(k.startswith("group/") for k in values)
    assert any(k.endswith("win_rate") for k in values) == cfg.is_sophia


@pytest.mark.parametrize("optimizer", ["sophiag", "lion"])
def test_logged_on_logged_steps_in_range_and_consistent_with_the_overall_win_rate(
    optimizer, shakespeare_char, tmp_path
):
    out = tmp_path / optimizer
    train.main(
        tiny_args(
            shakespeare_char,
            out,
            optimizer_name=optimizer,
            max_iters=12,
            eval_interval=6,
            log_interval=3,
            learning_rate=1e-2 if optimizer == "sophiag" else 1e-3,
        )
    )
    logs = [r for r in metrics_rows(out) if "train/loss" in r]
    assert [r["iter"] for r in logs] == [3, 6, 9, 12]
    sizes = {}
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=80))
    for name, p in model.named_parameters():
        sizes[telemetry.group_of(name)] = sizes.get(telemetry.group_of(name), 0) + p.numel()
    for r in logs:
        ratios = [r[f"group/{g}/update_ratio"] for g in telemetry.GROUPS]
        assert all(0 < v < 1 for v in ratios), ratios
        if optimizer == "sophiag":
            wins = {g: r[f"group/{g}/win_rate"] for g in telemetry.GROUPS}
            assert all(0 <= v <= 1 for v in wins.values())
            assert all(r[f"group/{g}/hessian_mean"] >= 0 for g in telemetry.GROUPS)
            overall = sum(wins[g] * sizes[g] for g in wins) / sum(sizes.values())
            assert overall == pytest.approx(r["train/win_rate"], abs=1e-9)
        else:
            assert not any(k.endswith(("win_rate", "hessian_mean")) for k in r)
