"""What scripts/bench/bench_train.py measures and the knobs its lever study turned: the step timer, a
Hessian batch smaller than one micro-batch, and the fused optimizer step."""

import json
import subprocess
import sys
import time

import pytest
import torch

import sophia
import train
from errors import UserError
from tests.helpers import REPO, metrics_rows, tiny_args
from timing import StepTimer


def test_step_timer_charges_a_nested_part_to_the_outer_one():
    timer = StepTimer(torch.device("cpu"), enabled=True)
    with timer("hessian"):
        with timer("data"):
            time.sleep(0.02)
    with timer("data"):
        time.sleep(0.01)
    seconds = timer.seconds()
    assert set(seconds) == {"hessian", "data"}
    assert seconds["hessian"] >= 0.02 and 0.01 <= seconds["data"] < seconds["hessian"]
    timer.reset()
    assert timer.seconds() == {}
    off = StepTimer(torch.device("cpu"))
    with off("data"):
        pass
    assert off.seconds() == {}


def test_gnb_labels_do_not_depend_on_the_sampling_chunk(monkeypatch):
    """gnb_loss samples a few rows at a time (cheaper on CPU): the labels, loss and gradient are
    those of sampling all rows at once."""
    logits = torch.randn(37, 101, dtype=torch.float64) * 3

    def loss_and_grad(chunk_numel):
        monkeypatch.setattr(sophia, "_CPU_SAMPLE_CHUNK_NUMEL", chunk_numel)
        x = logits.clone().requires_grad_()
        loss = sophia.gnb_loss(x, generator=torch.Generator().manual_seed(3))
        loss.backward()
        return loss.detach(), x.grad

    whole, rows = loss_and_grad(10**9), loss_and_grad(5 * 101)  # one chunk; chunks of 5 rows (the last of 2)
    assert torch.equal(whole[0], rows[0]) and torch.equal(whole[1], rows[1])


def test_hessian_batch_smaller_than_a_micro_batch(shakespeare, tmp_path):
    """hess_total_batch_size=2 with micro-batches of 4: one micro-batch of 2 sequences per refresh."""
    train.main(tiny_args(shakespeare, tmp_path, hess_total_batch_size=2, max_iters=4, eval_interval=4))
    last = [r for r in metrics_rows(tmp_path) if "train/loss" in r][-1]
    assert last["iter"] == 4 and last["tokens_seen"] == 4 * 8 * 32 + 2 * 2 * 32  # 2 refreshes of 2 x 32 tokens
    assert last["optim/hessian_norm"] > 0
    assert json.loads((tmp_path / "config.json").read_text())["hess_micro"] == 1
    with pytest.raises(UserError, match="hess_total_batch_size=6 is not divisible by batch_size"):
        train.main(tiny_args(shakespeare, tmp_path / "bad", hess_total_batch_size=6))


def test_fused_optimizer_selects_the_fused_step():
    def build(**overrides):
        cfg = train.TrainConfig(n_layer=1, n_head=2, n_embd=8, block_size=8, **overrides)
        return train.make_optimizer(cfg, train.build_model(cfg), torch.device("cpu"))

    assert build(optimizer_name="adamw", fused_optimizer=True).defaults["fused"]
    assert not build(optimizer_name="adamw").defaults["fused"]  # None: fused on CUDA only
    assert build(optimizer_name="sophiag", fused_optimizer=True).defaults["fused"]
    assert not build(optimizer_name="sophiag").defaults["fused"]
    with pytest.raises(UserError, match="fused_optimizer=True but lion has no fused step"):
        train.TrainConfig(optimizer_name="lion", fused_optimizer=True).validate()


def tiny_bench_args(data_dir):
    """bench_train.py's config and overrides for a one-layer model of 16 x 16 on the CPU."""
    config = str(REPO / "config" / "train_tiny_sophiag.py")
    model = ["--n_layer=1", "--n_embd=16", "--n_head=2", "--block_size=16", "--batch_size=4", "--total_batch_size=4"]
    return [config, f"--data_dir={data_dir}", "--device=cpu", *model]


def test_bench_train_times_every_entry_against_adamw(shakespeare):
    cmd = [
        sys.executable,
        "scripts/bench/bench_train.py",
        *tiny_bench_args(shakespeare),
        "--hess_interval=2",
        "--optimizers",
        "adamw,sophiag,sophiag:hess_total_batch_size=2",
        "--steps",
        "2",
        "--rounds",
        "2",
        "--warmup",
        "1",
    ]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    table = out.stdout[out.stdout.index("\nentry") + 1 :].splitlines()
    assert [line.split()[0] for line in table[1:4]] == ["adamw", "sophiag", "sophiag:hess_total_batch_size=2"]
    assert table[1].split()[-2:] == ["1.000x", "[1.000-1.000]"]
    hessian_share = float(table[2].split()[8].rstrip("%"))  # sophiag's Hessian column (MFU "-" on a CPU)
    assert 0 < hessian_share < 100
    assert table[-1].startswith("peak RSS")
    bad = subprocess.run(
        [sys.executable, "scripts/bench/bench_train.py", "--optimizers", "adamw,nope"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: optimizer_name='nope'")


def test_bench_refresh_prices_every_lever_as_overhead_on_a_step(shakespeare):
    cmd = [
        sys.executable,
        "scripts/bench/bench_train.py",
        "--refresh",
        *tiny_bench_args(shakespeare),
        "--fractions",
        "1,4",
        "--repeats",
        "1",
    ]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = {line[:32].strip(): line[32:].split() for line in out.stdout.splitlines()[2:]}
    assert list(rows) == [
        "step",
        "fresh batch of 4",
        "fresh batch of 1",
        "training forward, 4",
        "training forward, 1",
        "sampling: gnb_loss",
        "sampling: torch.multinomial",
    ]
    assert float(rows["step"][0]) > 0 and all(v[1].endswith("%") for k, v in rows.items() if k != "step")
    bad = subprocess.run(cmd[:-4] + ["--fractions", "3"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr == "error: --fractions: batch_size=4 is not divisible by '3'\n"
