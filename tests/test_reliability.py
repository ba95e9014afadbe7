"""Reliability (issue 6): a run survives kill -9 at any moment, pre-emption, a dead DDP rank,
corrupted checkpoints and non-finite steps, and reproduces the uninterrupted run bit for bit;
every user mistake is one line on stderr and exit code 2.

Process deaths are real: tests/train_harness.py runs train.py in a child process that SIGKILLs or
SIGTERMs itself at a chosen iteration or in the middle of writing a checkpoint. Everything else runs
in this process (faster), through train.main() or train.cli()."""

import copy
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

import checkpoint
import train
from tests.helpers import REPO, deterministic, metrics_rows, run_harness, run_train, same, tiny_args

MAX_ITERS, EVAL_INTERVAL = 12, 4  # checkpoints at 4, 8, 12 (keep_last=2)


pytestmark = pytest.mark.usefixtures("one_thread")


def run_args(data_dir, out_dir, **overrides):
    """Sophia-G with dropout and a Hessian refresh off the checkpoint grid: every RNG, the data
    position and the Hessian EMA have to line up for a resumed run to match."""
    return tiny_args(
        data_dir,
        out_dir,
        **{
            "max_iters": MAX_ITERS,
            "eval_interval": EVAL_INTERVAL,
            "lr_decay_iters": MAX_ITERS,
            "dropout": 0.1,
            "hess_interval": 3,
            **overrides,
        },
    )


@pytest.fixture(scope="module")
def reference(shakespeare_char, tmp_path_factory):
    """The uninterrupted run that every interrupted one has to reproduce."""
    out = tmp_path_factory.mktemp("reference")
    train.main(run_args(shakespeare_char, out))
    return out


def cli(monkeypatch, capsys, args):
    """train.cli() as `python train.py args` runs it: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["train.py", *map(str, args)])
    capsys.readouterr()
    code = train.cli()
    out, err = capsys.readouterr()
    return code, out, err


def ckpt_names(out_dir):
    return [p.name for p in checkpoint.checkpoint_paths(out_dir)]


def assert_same_run(out_dir, ref_dir):
    """metrics.jsonl (all but the timings) and the final checkpoint (weights, optimizer state,
    scaler, RNGs, counters) equal the reference run's exactly; no row is duplicated or missing."""
    rows = metrics_rows(out_dir)
    assert [r["iter"] for r in rows if "train/loss" in r] == list(range(1, MAX_ITERS + 1))
    assert [r["iter"] for r in rows if "val/loss" in r] == list(range(0, MAX_ITERS + 1, EVAL_INTERVAL))
    assert deterministic(rows) == deterministic(metrics_rows(ref_dir))
    assert ckpt_names(out_dir) == ckpt_names(ref_dir) == ["ckpt_00000012.pt", "ckpt_00000008.pt"]
    a = checkpoint.read_checkpoint(checkpoint.checkpoint_paths(out_dir)[0])
    b = checkpoint.read_checkpoint(checkpoint.checkpoint_paths(ref_dir)[0])
    assert a.keys() == b.keys()
    for key in a.keys() - {"time_s", "config", "wandb_run_id"}:
        assert same(a[key], b[key]), key


def all_finite(ckpt):
    tensors = list(ckpt["model"].values()) + [
        t for s in ckpt["optimizer"]["state"].values() for t in s.values() if isinstance(t, torch.Tensor)
    ]
    return all(torch.isfinite(t).all() for t in tensors)


def corrupt(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8).tobytes())
    else:
        path.write_bytes(b"")


def snapshot(run):
    return {
        "weights": [p.detach().clone() for p in run.raw_model.parameters()],
        "optimizer": copy.deepcopy(run.optimizer.state_dict()["state"]),
    }


def poison_grads(monkeypatch, stream, iters):
    """forward_backward leaves a NaN in one gradient coordinate at the given iterations of a stream."""
    forward_backward = train.forward_backward

    def poisoned(run, loss_fn, s, it, n_micro):
        loss = forward_backward(run, loss_fn, s, it, n_micro)
        if s == stream and it in iters:
            next(p for p in run.raw_model.parameters() if p.grad is not None).grad.view(-1)[0] = float("nan")
        return loss

    monkeypatch.setattr(train, "forward_backward", poisoned)


# ----------------------------------------------------------------------------- kill -9, SIGTERM, resume


def test_sigkill_between_checkpoints_then_auto_resume_equals_the_uninterrupted_run(
    shakespeare_char, reference, tmp_path
):
    out = tmp_path / "run"
    args = run_args(shakespeare_char, out, init_from="auto")  # the same command line, first start and restart
    died = run_harness(["--kill_at_iter", "6"], args)
    assert died.returncode == -signal.SIGKILL, died.stderr
    assert ckpt_names(out) == ["ckpt_00000004.pt"]
    assert metrics_rows(out)[-1]["iter"] == 6  # rows past the checkpoint, which the resume must replace
    train.main(args)
    assert_same_run(out, reference)


@pytest.mark.parametrize("fault", ["--kill_in_save", "--kill_after_rename"])
def test_sigkill_while_writing_a_checkpoint_leaves_a_loadable_one(fault, shakespeare_char, reference, tmp_path, capsys):
    out = tmp_path / "run"
    args = run_args(shakespeare_char, out, init_from="auto")
    died = run_harness([fault, "8"], args)
    assert died.returncode == -signal.SIGKILL, died.stderr
    if fault == "--kill_in_save":  # half of ckpt 8 is on disk, hidden, and only ckpt 4 counts
        partial = out / ".ckpt_00000008.pt.tmp"
        assert 0 < partial.stat().st_size < (out / "ckpt_00000004.pt").stat().st_size
        with pytest.raises(RuntimeError, match="zip archive"):
            torch.load(partial, weights_only=True)
        assert ckpt_names(out) == ["ckpt_00000004.pt"]
    else:  # renamed into place but not yet verified nor pruned: both are complete
        assert ckpt_names(out) == ["ckpt_00000008.pt", "ckpt_00000004.pt"]
    newest = checkpoint.checkpoint_paths(out)[0]
    assert checkpoint.read_checkpoint(newest)["iter"] == int(newest.stem[len(checkpoint.CKPT_PREFIX) :])
    capsys.readouterr()
    train.main(args)
    assert f"resuming from {newest}" in capsys.readouterr().out
    assert_same_run(out, reference)
    assert not list(out.glob(".*.tmp"))  # the resumed run rewrote ckpt 8 over the partial file


def test_sigterm_checkpoints_at_the_next_step_exits_143_and_resumes_exactly(shakespeare_char, reference, tmp_path):
    out = tmp_path / "run"
    args = run_args(shakespeare_char, out, init_from="auto")
    stopped = run_harness(["--sigterm_at_iter", "6"], args)  # arrives during iteration 6 -> stop at 7
    assert stopped.returncode == 143, stopped.stderr
    assert stopped.stderr.splitlines()[-1] == (
        f"stopped: SIGTERM at iter 7: checkpoint written to {out}; continue with --init_from=auto"
    )
    assert "Traceback" not in stopped.stderr
    assert ckpt_names(out) == ["ckpt_00000007.pt", "ckpt_00000004.pt"]
    assert metrics_rows(out)[-1]["iter"] == 7
    train.main(args)
    assert_same_run(out, reference)


# ----------------------------------------------------------------------------- corrupted checkpoints


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
def test_corrupted_newest_checkpoint_falls_back_to_the_previous_one(how, shakespeare_char, reference, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    newest = out / "ckpt_00000012.pt"
    corrupt(newest, how)
    capsys.readouterr()
    train.main(run_args(shakespeare_char, out, init_from="auto"))
    log = capsys.readouterr().out
    assert f"warning: skipping checkpoint {newest} is damaged or unreadable" in log
    assert f"resuming from {out / 'ckpt_00000008.pt'}" in log
    assert_same_run(out, reference)  # iterations 9-12 redone, ckpt 12 rewritten


def test_a_stale_newer_checkpoint_never_gets_the_new_one_pruned(shakespeare_char, reference, tmp_path):
    """keep_last=1, a good ckpt 8 and a corrupted ckpt 12 from an earlier attempt: the run resumes from
    8 and writes 10, which must survive (pruning by number alone would delete the new one and keep
    the corrupted file)."""
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(reference / "ckpt_00000008.pt", out)
    shutil.copy(reference / "ckpt_00000012.pt", out)
    corrupt(out / "ckpt_00000012.pt", "truncated")
    train.main(run_args(shakespeare_char, out, init_from="auto", keep_last=1, eval_interval=2, max_iters=10))
    assert ckpt_names(out) == ["ckpt_00000010.pt"]
    assert checkpoint.read_checkpoint(out / "ckpt_00000010.pt")["iter"] == 10


def test_a_checkpoint_that_does_not_read_back_keeps_the_older_one(shakespeare_char, tmp_path, monkeypatch, capsys):
    """keep_last=1: ckpt 4 is written with garbage at its start (a bad disk); it fails verification,
    the run stops with a one-line error and ckpt 2 is not pruned."""
    out = tmp_path / "run"
    save = torch.save

    def bad_disk(obj, f, *a, **kw):
        save(obj, f, *a, **kw)
        if obj["iter"] == 4:
            f.seek(0)
            f.write(b"\0" * 4096)

    monkeypatch.setattr(torch, "save", bad_disk)
    code, _, err = cli(monkeypatch, capsys, run_args(shakespeare_char, out, keep_last=1, eval_interval=2, max_iters=4))
    assert code == 2
    assert err.startswith(f"error: checkpoint {out / 'ckpt_00000004.pt'} is damaged or unreadable")
    assert len(err.splitlines()) == 1
    assert checkpoint.read_checkpoint(out / "ckpt_00000002.pt")["iter"] == 2


def damage_tensor_bytes(path, finite):
    """Overwrite 64 bytes in the middle of the largest tensor inside a checkpoint, keeping the file's
    size and zip structure (what bit rot or a half-finished copy leaves). finite=True writes float32
    values that are finite and plausible (0.01), which no finiteness check can see."""
    with zipfile.ZipFile(path) as archive:
        entry = max(archive.infolist(), key=lambda i: i.file_size)
    with open(path, "r+b") as f:
        f.seek(entry.header_offset + 26)
        name_len, extra_len = np.frombuffer(f.read(4), dtype="<u2")
        start = entry.header_offset + 30 + int(name_len) + int(extra_len)  # the entry's first data byte
        f.seek(start + (entry.file_size // 2) // 4 * 4)
        f.write(np.full(16, 0.01, np.float32).tobytes() if finite else b"\xff" * 64)


@pytest.mark.parametrize("finite", [False, True], ids=["nan-bytes", "finite-values"])
def test_damaged_tensor_bytes_are_detected_and_the_run_falls_back_to_an_equal_result(
    finite, shakespeare_char, reference, tmp_path, capsys
):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    newest = out / "ckpt_00000012.pt"
    damage_tensor_bytes(newest, finite)
    assert newest.stat().st_size == (reference / "ckpt_00000012.pt").stat().st_size
    torch.load(newest, weights_only=True)  # torch itself loads it without complaint
    capsys.readouterr()
    train.main(run_args(shakespeare_char, out, init_from="resume"))
    log = capsys.readouterr().out
    assert f"warning: skipping checkpoint {newest} is damaged or unreadable (checksum mismatch in " in log
    assert f"resuming from {out / 'ckpt_00000008.pt'}" in log
    assert_same_run(out, reference)


def test_non_finite_state_in_an_intact_file_makes_the_checkpoint_invalid(shakespeare_char, reference, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    ckpt = checkpoint.read_checkpoint(out / "ckpt_00000012.pt")
    next(iter(ckpt["optimizer"]["state"].values()))["hessian"].view(-1)[0] = float("inf")
    torch.save(ckpt, tmp_path / "nan.pt")  # checksums match: the damage happened before writing
    os.replace(tmp_path / "nan.pt", out / "ckpt_00000012.pt")  # (the loaded one is memory-mapped: no overwrite)
    capsys.readouterr()
    train.main(run_args(shakespeare_char, out, init_from="auto"))
    assert (
        f"skipping checkpoint {out / 'ckpt_00000012.pt'} is damaged or unreadable (non-finite weights or "
        f"optimizer state)"
    ) in capsys.readouterr().out
    assert_same_run(out, reference)


def test_every_checkpoint_damaged_is_one_line_naming_them_and_exit_2(
    shakespeare_char, reference, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    for path in checkpoint.checkpoint_paths(out):
        damage_tensor_bytes(path, finite=True)
    for init_from in ("resume", "auto"):  # auto must not start over on top of the damaged run either
        code, _, err = cli(monkeypatch, capsys, run_args(shakespeare_char, out, init_from=init_from))
        assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
        assert err.startswith(
            f"error: every checkpoint in {out} is damaged (ckpt_00000012.pt, ckpt_00000008.pt): "
            f"restore them from a copy"
        )
    assert ckpt_names(out) == ["ckpt_00000012.pt", "ckpt_00000008.pt"]  # nothing was overwritten or pruned


def test_verify_checkpoint_lists_each_checkpoint_as_ok_or_damaged(reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    script = [sys.executable, str(REPO / "scripts" / "tools" / "verify_checkpoint.py"), str(out)]
    good = subprocess.run(script, capture_output=True, text=True)
    assert good.returncode == 0 and good.stdout.splitlines()[-1] == "2 ok, 0 damaged"
    damage_tensor_bytes(out / "ckpt_00000008.pt", finite=True)
    bad = subprocess.run(script, capture_output=True, text=True)
    lines = bad.stdout.splitlines()
    assert bad.returncode == 1 and lines[-1] == "1 ok, 1 damaged"
    assert lines[0].startswith(f"ok       {out / 'ckpt_00000012.pt'}: iter 12, optimizer sophiag")
    assert lines[1].startswith(
        f"DAMAGED  {out / 'ckpt_00000008.pt'}: checkpoint {out / 'ckpt_00000008.pt'} is "
        f"damaged or unreadable (checksum mismatch in "
    )
    empty = subprocess.run(script[:-1] + [str(tmp_path / "nothing")], capture_output=True, text=True)
    assert empty.returncode == 2 and empty.stderr.startswith("error: no checkpoint in ")


# ----------------------------------------------------------------------------- non-finite guard


def test_nan_gradient_skips_the_step_and_leaves_the_optimizer_state_untouched(shakespeare_char, tmp_path, monkeypatch):
    bad = 5  # (5 + 1) % hess_interval == 0: the Hessian refresh due after this step is skipped too
    poison_grads(monkeypatch, train.TRAIN, {bad})
    snapshots, train_step = {}, train.train_step

    def watched(run, it):
        snapshots[it] = snapshot(run)
        return train_step(run, it)

    monkeypatch.setattr(train, "train_step", watched)
    handler = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "run"
    train.main(run_args(shakespeare_char, out))
    assert signal.getsignal(signal.SIGTERM) is handler  # train.main leaves the process as it found it
    # the state entering iteration 6 is the state entering iteration 5: weights, exp_avg, hessian, step
    assert same(snapshots[bad], snapshots[bad + 1])
    assert not same(snapshots[bad - 1], snapshots[bad])  # (a normal step does change it)
    logs = [r for r in metrics_rows(out) if "train/loss" in r]
    assert [r["iter"] for r in logs] == list(range(1, MAX_ITERS + 1))  # training went on to the end
    assert [r["skipped_steps"] for r in logs] == [0] * bad + [1] * (MAX_ITERS - bad)
    assert logs[bad]["grad_norm"] is None and logs[bad]["train/win_rate"] is None
    assert all(r["grad_norm"] is not None for r in logs if r["iter"] != bad + 1)
    assert all(checkpoint.read_checkpoint(p)["skipped_steps"] == 1 for p in checkpoint.checkpoint_paths(out))
    assert all_finite(checkpoint.read_checkpoint(out / "ckpt_00000012.pt"))


def test_nan_at_every_step_from_the_start_stops_with_a_message(shakespeare_char, tmp_path, monkeypatch, capsys):
    poison_grads(monkeypatch, train.TRAIN, range(MAX_ITERS))
    out = tmp_path / "run"
    code, log, err = cli(monkeypatch, capsys, run_args(shakespeare_char, out, max_skipped_steps=3))
    assert code == 2
    assert err.startswith("error: 3 consecutive non-finite steps at iter 3: stopping.")
    assert len(err.splitlines()) == 1
    for it in (1, 2, 3):
        assert f"iter {it}: non-finite loss" in log
    # the rows before the stop (the stopping step raises before its row is written)
    assert [r["skipped_steps"] for r in metrics_rows(out) if "train/loss" in r] == [1, 2]
    assert ckpt_names(out) == []


def test_nan_at_every_step_after_a_resume_keeps_the_last_good_checkpoint(
    shakespeare_char, reference, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    before = {p.name: p.read_bytes() for p in checkpoint.checkpoint_paths(out)}
    poison_grads(monkeypatch, train.TRAIN, range(MAX_ITERS, 2 * MAX_ITERS))
    code, _, err = cli(
        monkeypatch,
        capsys,
        run_args(shakespeare_char, out, init_from="resume", max_iters=2 * MAX_ITERS, max_skipped_steps=3),
    )
    assert code == 2
    assert err.startswith("error: 3 consecutive non-finite steps at iter 15: stopping. Lower learning_rate")
    assert "continue from the last good checkpoint in" in err
    assert len(err.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in checkpoint.checkpoint_paths(out)} == before
    assert all(all_finite(checkpoint.read_checkpoint(p)) for p in checkpoint.checkpoint_paths(out))


@pytest.mark.parametrize("optimizer", ["sophiag", "sophiah"])
def test_non_finite_hessian_estimate_is_skipped_and_counted(optimizer, shakespeare_char, tmp_path, monkeypatch):
    bad = 2  # refreshes after iterations 2 and 5 (hess_interval=3)
    current, results, hessians = {}, {}, {}
    if optimizer == "sophiag":
        poison_grads(monkeypatch, train.HESSIAN, {bad})
    else:
        hutchinson = train.hutchinson

        def poisoned(loss, params):
            estimates = hutchinson(loss, params)
            if current["it"] == bad:
                estimates[0].view(-1)[0] = float("inf")
            return estimates

        monkeypatch.setattr(train, "hutchinson", poisoned)
    refresh_hessian = train.refresh_hessian

    def watched(run, it):
        current["it"] = it
        h = lambda: [s["hessian"].clone() for s in run.optimizer.state.values()]  # noqa: E731
        before = h()
        results[it] = refresh_hessian(run, it)
        hessians[it] = (before, h())
        return results[it]

    monkeypatch.setattr(train, "refresh_hessian", watched)
    out = tmp_path / "run"
    train.main(run_args(shakespeare_char, out, optimizer_name=optimizer, max_iters=6))
    assert results == {2: False, 5: True}
    assert same(*hessians[bad])
    assert not same(*hessians[5])  # (a good estimate does change h)
    logs = [r for r in metrics_rows(out) if "train/loss" in r]
    assert [r["skipped_hessian"] for r in logs] == [0] * bad + [1] * (6 - bad)
    assert [r["skipped_steps"] for r in logs] == [0] * 6
    final = checkpoint.read_checkpoint(out / "ckpt_00000006.pt")
    assert final["skipped_hessian"] == 1 and all_finite(final)


# ----------------------------------------------------------------------------- bad input: one line, exit 2


def write_data(root, train_tokens=1000, val_tokens=1000):
    """A small valid data folder (random uint16 tokens) with a consistent meta.json."""
    root.mkdir()
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", train_tokens), ("val", val_tokens)):
        rng.integers(0, 50257, n, dtype=np.uint16).tofile(root / f"{split}.bin")
        splits[split] = {"documents": 1, "tokens": n, "bytes": 2 * n}
    (root / "meta.json").write_text(json.dumps({"tokenizer": "gpt2", "splits": splits}))
    return root


def _missing(d):
    (d / "train.bin").unlink()


def _empty(d):
    (d / "train.bin").write_bytes(b"")


def _truncated(d):
    (d / "train.bin").write_bytes((d / "train.bin").read_bytes()[:-2])


def _odd(d):
    (d / "train.bin").write_bytes((d / "train.bin").read_bytes() + b"\0")


def data_case(change, *fragments, val_tokens=1000):
    def build(tmp_path, shakespeare_char, reference):
        d = write_data(tmp_path / "data", val_tokens=val_tokens)
        change(d)
        return run_args(d, tmp_path / "out"), [f.format(d=d) for f in fragments]

    return build


def args_case(overrides, *fragments):
    def build(tmp_path, shakespeare_char, reference):
        return run_args(shakespeare_char, tmp_path / "out") + overrides, list(fragments)

    return build


def ckpt_case(overrides, change, *fragments):
    """An out_dir holding the reference run's last checkpoint (n_embd=32, sophiag)."""

    def build(tmp_path, shakespeare_char, reference):
        out = tmp_path / "out"
        out.mkdir()
        shutil.copy(reference / "ckpt_00000012.pt", out)
        change(out / "ckpt_00000012.pt")
        return run_args(shakespeare_char, out) + overrides, [f.format(out=out) for f in fragments]

    return build


def config_case(text, *fragments):
    def build(tmp_path, shakespeare_char, reference):
        path = tmp_path / "my_config.py"
        if text is not None:
            path.write_text(text)
        return [path] + run_args(shakespeare_char, tmp_path / "out"), [f.format(path=path) for f in fragments]

    return build


def _out_dir_below_a_file(tmp_path, shakespeare_char, reference):
    (tmp_path / "a_file").write_text("not a folder")
    out = tmp_path / "a_file" / "run"
    return run_args(shakespeare_char, out), [
        f"out_dir {out} is not writable (Not a directory): choose another --out_dir"
    ]


BAD_INPUTS = {
    "unknown key": args_case(
        ["--learning_rte=1e-3"], "command line: unknown config key 'learning_rte'; did you mean 'learning_rate'?"
    ),
    "nanoGPT key": args_case(
        ["--gradient_accumulation_steps=4"],
        "unknown key 'gradient_accumulation_steps': it is derived: set total_batch_size",
    ),
    "override without a value": args_case(["--max_iters"], "override '--max_iters' must look like --key=value"),
    "word for an int": args_case(["--max_iters=ten"], "max_iters must be int, got 'ten' (str); write it as int"),
    "float for an int": args_case(["--batch_size=2.5"], "batch_size must be int, got 2.5 (float)"),
    "word for a bool": args_case(["--compile=yes"], "compile must be bool or None, got 'yes' (str)"),
    "invalid optimizer": args_case(
        ["--optimizer_name=sophia"], "optimizer_name='sophia' is not one of sophiag, sophiah, adamw, lion"
    ),
    "spike warm-up beyond its window": args_case(
        ["--spike_warmup=200"], "spike_warmup=200 must be between 2 and spike_window=128"
    ),
    "rollback skips beyond their window": args_case(
        ["--spike_rollback_skips=101"],
        "spike_rollback_skips=101 skips never fit in spike_rollback_window=100 steps: lower it, or 0",
    ),
    "batch not divisible": args_case(
        ["--total_batch_size=10"],
        "total_batch_size=10 is not divisible by batch_size * world_size = 4 * 1: "
        "change batch_size or total_batch_size "
        "(batch_size values that fit world_size=1: 1, 2, 5, 10)",
    ),
    "missing bin": data_case(_missing, "{d}/train.bin not found: point data_dir at a folder with train.bin/val.bin"),
    "empty bin": data_case(_empty, "{d}/train.bin is empty: point data_dir at"),
    "truncated bin": data_case(_truncated, "{d}/train.bin is truncated or stale: 999 tokens, meta.json says 1000"),
    "odd-sized bin": data_case(_odd, "{d}/train.bin has an odd size (2001 bytes), so it is not uint16 tokens"),
    "block_size larger than the data": data_case(
        lambda d: None,
        "{d}/val.bin has 20 tokens, not more than block_size=32: lower block_size or use more data",
        val_tokens=20,
    ),
    "checkpoint of another shape": ckpt_case(
        ["--n_embd=64", "--init_from=auto"],
        lambda p: None,
        "the checkpoint in {out} has a different model shape: n_embd=32 "
        "(config says 64); use another out_dir or the checkpoint's shape",
    ),
    "checkpoint of another optimizer": ckpt_case(
        ["--optimizer_name=adamw", "--init_from=resume"],
        lambda p: None,
        "was trained with optimizer_name='sophiag', config says 'adamw'",
    ),
    "corrupted checkpoint": ckpt_case(
        ["--init_from=resume"],
        lambda p: corrupt(p, "truncated"),
        "every checkpoint in {out} is damaged (ckpt_00000012.pt): restore them from a copy",
    ),
    "scratch over an earlier run": ckpt_case(
        [],
        lambda p: None,
        "{out} holds checkpoints of an earlier run and init_from='scratch' "
        "would overwrite them: continue it with --init_from=auto",
    ),
    "resume without a checkpoint": args_case(["--init_from=resume"], "has no checkpoint: use init_from='auto'"),
    "out_dir not writable": _out_dir_below_a_file,
    "config file not found": config_case(None, "config file {path} not found"),
    "config file syntax error": config_case("batch_size = (4\n", "config file {path} failed to run: SyntaxError:"),
    "config file unknown key": config_case(
        "lerning_rate = 1e-3\n", "{path}: unknown config key 'lerning_rate'; did you mean 'learning_rate'?"
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_naming_the_fix_and_exit_code_2(
    case, shakespeare_char, reference, tmp_path, monkeypatch, capsys
):
    args, fragments = BAD_INPUTS[case](tmp_path, shakespeare_char, reference)
    code, out, err = cli(monkeypatch, capsys, args)
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for fragment in fragments:
        assert fragment in err
    assert "Traceback" not in out + err


def test_bad_input_in_a_real_process_exits_2_without_a_traceback(shakespeare_char, tmp_path):
    out = run_train(run_args(shakespeare_char, tmp_path / "out") + ["--learning_rte=1e-3"], check=False)
    assert out.returncode == 2
    assert out.stderr == ("error: command line: unknown config key 'learning_rte'; did you mean 'learning_rate'?\n")


def test_batch_not_divisible_by_world_size_under_torchrun(shakespeare_char, tmp_path):
    out = run_train(run_args(shakespeare_char, tmp_path / "out", total_batch_size=12), nproc=2, check=False)
    assert out.returncode != 0
    message = (
        "error: total_batch_size=12 is not divisible by batch_size * world_size = 4 * 2: "
        "change batch_size or total_batch_size (batch_size values that fit world_size=2: 1, 2, 3, 6)\n"
    )
    assert out.stderr.count(message) == 2  # each rank says it once, on one line, and exits 2
    assert "exitcode  : 2" in out.stderr
    assert 'File "' + str(REPO / "train.py") not in out.stderr  # no traceback from train.py


# ----------------------------------------------------------------------------- security


class Payload:
    """Pickles to a call of os.system: what a malicious checkpoint would run on torch.load."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_checkpoint_with_a_pickled_object_is_refused_and_never_runs(
    shakespeare_char, reference, tmp_path, monkeypatch, capsys
):
    out, marker = tmp_path / "out", tmp_path / "PWNED"
    out.mkdir()
    ckpt = checkpoint.read_checkpoint(reference / "ckpt_00000012.pt")
    torch.save({**ckpt, "note": Payload(marker)}, out / "ckpt_00000012.pt")
    code, log, err = cli(monkeypatch, capsys, run_args(shakespeare_char, out, init_from="resume"))
    assert code == 2 and len(err.splitlines()) == 1
    assert f"every checkpoint in {out} is damaged (ckpt_00000012.pt)" in err
    assert f"skipping checkpoint {out / 'ckpt_00000012.pt'} is damaged or unreadable (UnpicklingError" in log
    assert not marker.exists()
    pickle.loads(pickle.dumps(Payload(marker)))  # the payload is live: unrestricted unpickling runs it
    assert marker.exists()


def test_command_line_values_are_literals_never_code(shakespeare_char, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code_text = "__import__('os').system('touch PWNED')"
    cfg = train.parse_args([f"--out_dir={code_text}", f"--wandb_run_name={code_text}"])
    assert cfg.out_dir == cfg.wandb_run_name == code_text  # plain strings
    code, _, err = cli(monkeypatch, capsys, [f"--seed={code_text}"])
    assert code == 2 and err == f'error: seed must be int, got "{code_text}" (str); write it as int\n'
    assert train.parse_args(["--max_iters=1_000", "--min_lr=None", "--compile=False"]).max_iters == 1000
    assert not (tmp_path / "PWNED").exists()
    config = tmp_path / "config.py"  # whereas config files are Python, and run (documented)
    config.write_text("import os\nbatch_size = 2 * 3\nopen('RAN', 'w').close()\n")
    assert train.parse_args([str(config)]).batch_size == 6 and (tmp_path / "RAN").exists()


# ----------------------------------------------------------------------------- elastic restart, wandb


def test_torchrun_restarts_after_a_rank_dies_and_matches_one_process(shakespeare_char, reference, tmp_path):
    """2 gloo ranks; rank 1 is SIGKILLed at iteration 6 on the first attempt; torchrun --max-restarts=1
    restarts both and --init_from=auto resumes from ckpt 4. The result equals the single-process run
    with the same total batch (up to the all-reduce's summation order). Without
    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, torch 2.13's restarted workers fail to connect (see below)."""
    out = tmp_path / "run"
    done = run_harness(
        ["--kill_at_iter", "6", "--rank", "1", "--first_attempt_only"],
        run_args(shakespeare_char, out, init_from="auto"),
        nproc=2,
        torchrun=["--max-restarts=1", "--monitor-interval=0.2"],
        env={"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "exitcode: -9" in done.stderr and f"resuming from {out / 'ckpt_00000004.pt'}" in done.stdout
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE" not in done.stdout
    rows, ref = metrics_rows(out), metrics_rows(reference)
    assert [(r["iter"], "val/loss" in r) for r in rows] == [(r["iter"], "val/loss" in r) for r in ref]
    for r, r_ref in zip(rows, ref):
        for k, v in deterministic([r_ref])[0].items():
            assert r[k] == pytest.approx(v, rel=1e-5, abs=1e-6), (r["iter"], k)
    assert ckpt_names(out) == ["ckpt_00000012.pt", "ckpt_00000008.pt"]


def test_torchrun_restarts_with_a_shared_store_are_warned_about(shakespeare_char, tmp_path, monkeypatch, capsys):
    """What torchrun --max-restarts=1 sets in its workers by default (the store shared with the agent)."""
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "1")
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    train.main(run_args(shakespeare_char, tmp_path / "run", max_iters=0))
    assert "(pytorch/pytorch#135712): export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in capsys.readouterr().out


def test_wandb_run_id_survives_a_kill_and_resume(shakespeare_char, reference, tmp_path):
    out, wandb_dir = tmp_path / "run", tmp_path / "wandb_dir"
    wandb_dir.mkdir()
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(wandb_dir)}
    args = run_args(shakespeare_char, out, init_from="auto", wandb_log=True)
    died = run_harness(["--kill_at_iter", "6"], args, env=env)
    assert died.returncode == -signal.SIGKILL, died.stderr[-3000:]
    run_id = checkpoint.read_checkpoint(out / "ckpt_00000004.pt")["wandb_run_id"]
    assert run_id
    run_train(args, env=env)
    assert checkpoint.read_checkpoint(out / "ckpt_00000012.pt")["wandb_run_id"] == run_id
    runs = sorted(wandb_dir.rglob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith(f"-{run_id}") for r in runs), runs
    assert all((r / f"run-{run_id}.wandb").is_file() for r in runs)
    assert not (out / "wandb").exists()  # WANDB_DIR is honoured
    assert_same_run(out, reference)  # logging to wandb changes nothing in the run
