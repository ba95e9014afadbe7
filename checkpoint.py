"""Checkpoints: one file per checkpoint, written atomically and verified, read safely, and the
RNG states that make a resumed run equal to an uninterrupted one."""
import os
import random
import zipfile

import numpy as np
import torch

from errors import UserError

CKPT_PREFIX = "ckpt_"


def checkpoint_paths(out_dir):
    """Complete checkpoints in out_dir, newest first. Unfinished writes are hidden '.ckpt_*.tmp' files."""
    found = []
    for p in out_dir.glob(f"{CKPT_PREFIX}*.pt"):
        try:
            found.append((int(p.stem[len(CKPT_PREFIX):]), p))
        except ValueError:
            continue
    return [p for _, p in sorted(found, reverse=True)]


def verify_file(path):
    """Why the checkpoint file at path is damaged, or None when it is intact. torch.save writes a zip
    archive whose every entry (the pickled structure and each tensor's bytes) carries a CRC-32 of its
    content, but torch.load never checks them: recomputing them here catches damage that keeps the
    file's size and structure (bit rot, a half-finished copy), which loading alone would not."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as e:
        return f"not a readable archive: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return f"checksum mismatch in {bad}" if bad else None


def non_finite(tensors):
    """Whether any floating-point tensor among `tensors` holds a NaN or an infinity."""
    floats = [t for t in tensors if torch.is_tensor(t) and t.is_floating_point() and t.numel()]
    return bool(floats) and not torch.isfinite(torch.stack(torch._foreach_norm(floats))).all()


def state_tensors(model_state, optimizer_state):
    """The tensors a checkpoint's weights and optimizer state are made of."""
    return list(model_state.values()) + [v for s in optimizer_state.get("state", {}).values() for v in s.values()]


def read_checkpoint(path, device="cpu", verify=True):
    """Load a checkpoint safely (weights_only: tensors and plain data, never arbitrary objects). With
    verify, a checksum mismatch or a non-finite weight or optimizer state makes it invalid (UserError)."""
    fix = "delete it (or restore it from a copy) to resume from an older one"
    why = verify_file(path) if verify else None
    if why is None:
        try:
            ckpt = torch.load(path, map_location=device, weights_only=True, mmap=True)
        except Exception as e:
            why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if why is not None:
        raise UserError(f"checkpoint {path} is damaged or unreadable ({why}); {fix}")
    missing = {"model", "optimizer", "iter", "model_args"} - set(ckpt)
    if missing:
        raise UserError(f"checkpoint {path} lacks {sorted(missing)}: it was not written by this train.py")
    if verify and non_finite(state_tensors(ckpt["model"], ckpt["optimizer"])):
        raise UserError(f"checkpoint {path} is damaged or unreadable (non-finite weights or optimizer state); {fix}")
    return ckpt


def save_checkpoint(state, out_dir, it, keep_last):
    """Write atomically (temp file, fsync, rename), verify the new file loads, and only then remove
    checkpoints beyond keep_last: a kill at any moment leaves the previous good one in place."""
    path = out_dir / f"{CKPT_PREFIX}{it:08d}.pt"
    tmp = out_dir / f".{path.name}.tmp"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(out_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    if read_checkpoint(path)["iter"] != it:
        raise RuntimeError(f"checkpoint {path} did not read back correctly; older checkpoints were kept")
    paths = checkpoint_paths(out_dir)
    i = paths.index(path)
    # numbered after this one: left by an abandoned attempt (e.g. a corrupted one a resume fell back past)
    for old in paths[:i] + paths[i + keep_last:]:
        old.unlink()
    return path


def latest_valid_checkpoint(out_dir, log):
    """The newest checkpoint in out_dir that verifies, as (path, checkpoint); (None, None) if none does.
    Each one skipped is named in a warning."""
    for path in checkpoint_paths(out_dir):
        try:
            return path, read_checkpoint(path)
        except UserError as e:
            log(f"warning: skipping {e}")
    return None, None


def rng_state():
    """Every RNG, as plain data (for weights_only loading)."""
    np_state = np.random.get_state()
    return {"python": random.getstate(), "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state):
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
