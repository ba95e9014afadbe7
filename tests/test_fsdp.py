"""FSDP (parallelism='fsdp') on 2 CPU ranks (gloo): the same results as DDP for every optimizer,
sharded checkpoints that survive a kill during a save and damage to a shard, resume on another
number of ranks, the tools that read sharded checkpoints, and one-line errors."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import checkpoint
import train
from data.common import GPT2_VOCAB_SIZE
from model import GPT, GPTConfig
from tests.helpers import (
    REPO,
    deterministic,
    metrics_rows,
    run_harness,
    run_train,
    same,
    tiny_args,
    train_in_one_launch,
)

MAX_ITERS, EVAL_INTERVAL = 12, 4


def args(data_dir, out_dir, **overrides):
    """Sophia-G with dropout, refreshes off the checkpoint grid, an eval that does not split evenly
    over 2 ranks: everything a resumed or resharded run has to line up."""
    return tiny_args(
        data_dir,
        out_dir,
        **{
            "max_iters": MAX_ITERS,
            "eval_interval": EVAL_INTERVAL,
            "eval_iters": 3,
            "lr_decay_iters": MAX_ITERS,
            "dropout": 0.1,
            "hess_interval": 3,
            "parallelism": "fsdp",
            **overrides,
        },
    )


@pytest.fixture(scope="module")
def reference(shakespeare, tmp_path_factory):
    """An uninterrupted FSDP run on 2 ranks: checkpoints 8 and 12 (sharded)."""
    out = tmp_path_factory.mktemp("fsdp_reference")
    run_train(args(shakespeare, out), nproc=2)
    return out


def assert_close_rows(a_dir, b_dir, keys, rel, after=-1):
    a, b = ([r for r in metrics_rows(d) if r["iter"] > after] for d in (a_dir, b_dir))
    assert [r["iter"] for r in a] == [r["iter"] for r in b]
    for ra, rb in zip(a, b):
        for k in keys:
            if ra.get(k) is not None:
                assert rb[k] == pytest.approx(ra[k], rel=rel, abs=1e-9), (ra["iter"], k)


def assert_same_run(out_dir, ref_dir):
    """metrics (all but timings) and the final sharded checkpoint equal the reference's bit for bit."""
    assert deterministic(metrics_rows(out_dir)) == deterministic(metrics_rows(ref_dir))
    names = [p.name for p in checkpoint.checkpoint_paths(out_dir)]
    assert names == [p.name for p in checkpoint.checkpoint_paths(ref_dir)] == ["ckpt_00000012", "ckpt_00000008"]
    a, b = (checkpoint.read_checkpoint(d / "ckpt_00000012") for d in (out_dir, ref_dir))
    for key in a.keys() - {"time_s", "config", "wandb_run_id"}:
        assert same(a[key], b[key]), key


OPTIMIZERS = ["sophiag", "adamw", "lion", "muon"]


@pytest.fixture(scope="module")
def ddp_and_fsdp(shakespeare_char, tmp_path_factory):
    """Every optimizer for 10 steps on 2 ranks, Hessian refreshes every 3, under DDP and under FSDP:
    all in one torchrun launch."""
    out = tmp_path_factory.mktemp("ddp_and_fsdp")
    runs = [
        tiny_args(
            shakespeare_char,
            out / f"{optimizer}_{parallelism}",
            max_iters=10,
            eval_interval=5,
            hess_interval=3,
            optimizer_name=optimizer,
            parallelism=parallelism,
        )
        for optimizer in OPTIMIZERS
        for parallelism in ("ddp", "fsdp")
    ]
    train_in_one_launch(runs, out)
    return out


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_fsdp_matches_ddp(optimizer, ddp_and_fsdp):
    """The losses and Sophia's statistics (global: summed over both ranks' shards) equal DDP's."""
    ddp, fsdp = ddp_and_fsdp / f"{optimizer}_ddp", ddp_and_fsdp / f"{optimizer}_fsdp"
    keys = [
        "train/loss",
        "val/loss",
        "eval/train_loss",
        "grad_norm",
        "train/win_rate",
        "optim/hessian_norm",
        *(k for k in metrics_rows(ddp)[-2] if k.startswith("group/")),
    ]
    assert len(keys) > 6
    assert_close_rows(ddp, fsdp, keys, rel=1e-5)
    rows = metrics_rows(fsdp)
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert losses[-1] < losses[0]
    if optimizer == "sophiag":
        # logged with the step, before the refresh that follows it: the first refresh is after step 3
        assert all(r["optim/hessian_norm"] > 0 for r in rows if r["iter"] > 3 and "train/loss" in r)


def test_sigkill_during_a_sharded_save_then_auto_equals_the_uninterrupted_run(shakespeare, reference, tmp_path):
    """Rank 0 dies while writing checkpoint 8 (its shards are written, meta.pt half): only the hidden
    directory is incomplete; the run continues from 4 and ends as if never killed."""
    out = tmp_path / "run"
    killed = run_harness(["--kill_in_save", "8", "--rank", "0"], args(shakespeare, out), nproc=2)
    assert killed.returncode != 0 and (out / ".ckpt_00000008.tmp").is_dir()
    assert [p.name for p in checkpoint.checkpoint_paths(out)] == ["ckpt_00000004"]
    run_train(args(shakespeare, out, init_from="auto"), nproc=2)
    assert_same_run(out, reference)


def test_a_damaged_shard_makes_every_rank_fall_back_to_the_same_older_checkpoint(shakespeare, reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    shard = out / "ckpt_00000012" / "__1_0.distcp"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 16] = np.full(4, 0.01, np.float32).tobytes()  # finite, same size
    shard.write_bytes(bytes(data))
    log = run_train(args(shakespeare, out, init_from="resume"), nproc=2).stdout
    assert (
        f"warning: skipping checkpoint {out / 'ckpt_00000012'} is damaged or unreadable (checksum mismatch in "
        f"__1_0.distcp)"
    ) in log
    assert f"resuming from {out / 'ckpt_00000008'}" in log
    assert_same_run(out, reference)


def test_resume_on_another_number_of_ranks_continues_the_same_run(shakespeare, reference, tmp_path):
    """2 ranks to iteration 4, then 1 rank to 8, then 2 ranks to 12 (DCP reshards the checkpoint each
    time): the losses equal the uninterrupted 2-rank run's within float rounding (one rank sums the
    two halves of the batch in another order)."""
    out = tmp_path / "run"
    for nproc, until in ((2, 4), (1, 8), (2, 12)):
        run_train(args(shakespeare, out, max_iters=until, init_from="auto"), nproc=nproc)
    assert_close_rows(reference, out, ["train/loss", "val/loss", "eval/train_loss"], rel=1e-5)


def test_sharded_checkpoints_are_read_by_the_tools(shakespeare, reference, tmp_path):
    ckpt = reference / "ckpt_00000012"
    verified = subprocess.run(
        [sys.executable, "scripts/tools/verify_checkpoint.py", str(reference)], cwd=REPO, capture_output=True, text=True
    )
    assert verified.returncode == 0 and verified.stdout.splitlines()[-1] == "2 ok, 0 damaged"
    one_file = tmp_path / "ckpt_00000012.pt"
    subprocess.run(
        [sys.executable, "scripts/tools/convert_checkpoint.py", str(ckpt), str(one_file)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    whole, sharded = checkpoint.read_checkpoint(one_file), checkpoint.read_checkpoint(ckpt)
    assert same(whole["model"], sharded["model"]) and whole["iter"] == 12
    assert {len(s) for s in whole["optimizer"]["state"].values()} == {3}  # step, exp_avg, hessian per parameter
    # the one-file checkpoint continues under DDP exactly where the sharded one would under FSDP
    ddp = tmp_path / "ddp"
    ddp.mkdir()
    shutil.copy(one_file, ddp)
    run_train(args(shakespeare, ddp, parallelism="ddp", init_from="resume", max_iters=14), nproc=2)
    fsdp = tmp_path / "fsdp"
    shutil.copytree(reference, fsdp)
    run_train(args(shakespeare, fsdp, init_from="resume", max_iters=14), nproc=2)
    assert_close_rows(fsdp, ddp, ["train/loss", "val/loss"], rel=1e-5, after=12)
    # ... and the one file continues under FSDP too (its optimizer state is sharded on load), on 1 rank
    one_rank = tmp_path / "fsdp_from_one_file"
    one_rank.mkdir()
    shutil.copy(one_file, one_rank)
    run_train(args(shakespeare, one_rank, init_from="resume", max_iters=14))
    assert_close_rows(fsdp, one_rank, ["train/loss", "val/loss"], rel=1e-5, after=12)
    sample = subprocess.run(
        [
            sys.executable,
            "sample.py",
            f"--out_dir={reference}",
            "--max_new_tokens=4",
            "--num_samples=1",
            "--device=cpu",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert sample.returncode == 0 and "---------------" in sample.stdout
    # Hugging Face export reads the sharded checkpoint directly: the same logits as the weights' own
    subprocess.run(
        [sys.executable, "scripts/tools/export_hf.py", str(reference), str(tmp_path / "hf")],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    from transformers import GPT2LMHeadModel

    model = GPT(GPTConfig(**whole["model_args"])).eval()
    model.load_state_dict(whole["model"])
    idx = torch.randint(0, GPT2_VOCAB_SIZE, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        hf_logits = GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()(idx).logits
        torch.testing.assert_close(hf_logits, model(idx)[0][..., :GPT2_VOCAB_SIZE], rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["--optimizer_name=sophiah"],
            "optimizer_name='sophiah' does not run under parallelism='fsdp' (its Hutchinson "
            "estimator needs double backward through the unsharded parameters): use "
            "parallelism='ddp', or sophiag",
        ),
        (["--dtype=float16"], "dtype='float16' is not supported with parallelism='fsdp': use dtype='bfloat16'"),
        (["--parallelism=zero3"], "parallelism='zero3': use 'ddp' or 'fsdp'"),
    ],
)
def test_fsdp_config_mistakes_are_one_line(overrides, message, shakespeare, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["train.py", *args(shakespeare, tmp_path), *overrides])
    assert train.cli() == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and message in err


def test_a_sharded_checkpoint_of_another_shape_is_one_line(shakespeare, reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    proc = run_train(args(shakespeare, out, n_embd=64, init_from="resume"), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert "has a different model shape: n_embd=32 (config says 64)" in proc.stderr


def test_muon_under_fsdp_orthogonalises_whole_matrices_with_one_gather_each():
    """GatheredMuon: one all-gather per matrix and the unsharded torch.optim.Muon's update (up to the
    last bits of the sharded gradient reduction); torch.optim.Muon on the shards as it is pays ~13
    collectives per matrix."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(REPO / "tests" / "muon_collectives.py"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["gathered"]["collectives"] == result["matrices"] == 8
    assert result["gathered"]["max_abs_diff"] < 1e-6
    assert result["as_is"]["collectives"] > 10 * result["matrices"]
