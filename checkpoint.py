"""Checkpoints, in two formats, each written atomically, carrying checksums that are verified on
every read, and read safely (tensors and plain data only):

- one file, `ckpt_XXXXXXXX.pt` (DDP and single-process runs): torch.save's zip archive, whose
  entries carry CRC-32s;
- sharded, a directory `ckpt_XXXXXXXX/` (FSDP runs): torch.distributed.checkpoint (DCP) files, each
  rank writing its own shards, `meta.pt` (everything but the weights and the optimizer state) and
  `checksums.json` (a CRC-32 of every file). DCP reshards on load, so a run can resume on another
  number of ranks.

No RNG state is saved: every random draw of training is seeded from (seed, iteration, micro-batch)
(train.py), so a resumed run equals an uninterrupted one on any number of devices. `Checkpointer` is what
train.py uses: it finds, validates and loads the checkpoint to resume from and saves new ones, in the
format of the run's parallelism; `load_model` gives sample.py, scripts/tools/export_hf.py and evaluations
the newest trained model of a run.
"""
import json
import os
import shutil
import sys
import warnings
import zipfile
import zlib
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as torch_dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_state_dict,
                                                     set_model_state_dict, set_optimizer_state_dict, set_state_dict)
from torch.distributed.tensor import DTensor

from atomic import atomic_write, fsync_dir
from errors import UserError
from hf import is_pretrained, load_gpt2
from model import GPT, GPTConfig
from vocab import GPT2, check_same, from_meta

CKPT_PREFIX = "ckpt_"
META, CHECKSUMS = "meta.pt", "checksums.json"  # in a sharded checkpoint's directory, next to DCP's files


def checkpoint_paths(out_dir):
    """Complete checkpoints in out_dir, newest first: files (ckpt_N.pt) and sharded directories (ckpt_N).
    Unfinished writes are hidden '.ckpt_*.tmp' files or directories."""
    found = []
    for p in out_dir.glob(f"{CKPT_PREFIX}*"):
        number = p.name[len(CKPT_PREFIX):]
        if p.suffix == ".pt" and not p.is_dir():
            number = p.stem[len(CKPT_PREFIX):]
        elif not p.is_dir():
            continue
        if number.isdigit():
            found.append((int(number), p))
    return [p for _, p in sorted(found, reverse=True)]


def is_sharded(path):
    return path.is_dir()


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


def finite_by_device(tensors):
    """{device: 0-dim bool tensor on it, whether every floating-point tensor among `tensors` on that
    device is finite} (for DTensors: this rank's shard). One reduction per device: a training state
    mixes devices (an optimizer's `step` counters stay on the CPU beside CUDA parameters)."""
    by_device = {}
    for t in tensors:
        if torch.is_tensor(t) and t.is_floating_point():
            local = t.to_local() if isinstance(t, DTensor) else t
            if local.numel():
                by_device.setdefault(local.device, []).append(local)
    return {device: torch.isfinite(torch.stack(torch._foreach_norm(ts))).all() for device, ts in by_device.items()}


def non_finite(tensors):
    """Whether any floating-point tensor among `tensors` holds a NaN or an infinity (for DTensors: in
    this rank's shard; the caller combines the ranks' answers)."""
    return not all(bool(finite) for finite in finite_by_device(tensors).values())


def state_tensors(model_state, optimizer_state):
    """The tensors a checkpoint's weights and optimizer state are made of."""
    return list(model_state.values()) + [v for s in optimizer_state.get("state", {}).values() for v in s.values()]


def damaged(path, why):
    """The message for a checkpoint that fails verification."""
    return f"checkpoint {path} is damaged or unreadable ({why}); delete it (or restore it from a copy) to resume from an older one"


def read_checkpoint(path, device="cpu", verify=True):
    """Load a checkpoint safely (weights_only: tensors and plain data, never arbitrary objects). With
    verify, a checksum mismatch or a non-finite weight or optimizer state makes it invalid (UserError).

    A sharded checkpoint is read whole into this process: its weights under "model" (the keys of
    GPT.state_dict()), no optimizer state; for sample.py, exports and checks. train.py loads one
    shard-wise with `load_sharded` instead."""
    if is_sharded(path):
        meta = read_sharded_meta(path, verify=verify)
        model = GPT(GPTConfig(**meta["model_args"]))
        state = {"model": get_model_state_dict(model)}
        _dcp_load(state, path)
        if verify and non_finite(list(state["model"].values())):
            raise UserError(damaged(path, "non-finite weights"))
        model.load_state_dict(state["model"])
        return {**meta, "model": model.state_dict()}
    why = verify_file(path) if verify else None
    if why is None:
        try:
            ckpt = torch.load(path, map_location=device, weights_only=True, mmap=True)
        except Exception as e:
            why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if why is not None:
        raise UserError(damaged(path, why))
    missing = {"model", "optimizer", "iter", "model_args"} - set(ckpt)
    if missing:
        raise UserError(f"checkpoint {path} lacks {sorted(missing)}: it was not written by this train.py")
    if verify and non_finite(state_tensors(ckpt["model"], ckpt["optimizer"])):
        raise UserError(damaged(path, "non-finite weights or optimizer state"))
    return ckpt


def _remove(path):
    """Delete a checkpoint; a directory is first renamed out of sight, so a kill in the middle of the
    deletion never leaves a half-deleted checkpoint under a valid name."""
    if not is_sharded(path):
        path.unlink()
        return
    doomed = path.with_name(f".{path.name}.deleting")
    os.replace(path, doomed)
    shutil.rmtree(doomed)


def _prune(out_dir, path, keep_last):
    paths = checkpoint_paths(out_dir)
    i = paths.index(path)
    # numbered after this one: left by an abandoned attempt (e.g. a corrupted one a resume fell back past)
    for old in paths[:i] + paths[i + keep_last:]:
        _remove(old)


def write_file(state, path):
    """torch.save, atomically (a hidden temporary file, fsync, rename into place)."""
    with atomic_write(path, "wb") as f:
        torch.save(state, f)


def save_checkpoint(state, out_dir, it, keep_last):
    """Write atomically (temp file, fsync, rename), verify the new file loads, and only then remove
    checkpoints beyond keep_last: a kill at any moment leaves the previous good one in place."""
    path = out_dir / f"{CKPT_PREFIX}{it:08d}.pt"
    write_file(state, path)
    if read_checkpoint(path)["iter"] != it:
        raise RuntimeError(f"checkpoint {path} did not read back correctly; older checkpoints were kept")
    _prune(out_dir, path, keep_last)
    return path


# ----------------------------------------------------------------------------- sharded (DCP)

def _crc32(path):
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return crc


def _share(names, rank, world_size):
    """This rank's share of a checkpoint's files, so that the ranks checksum them in parallel."""
    return sorted(names)[rank::world_size]


def save_sharded(model, optimizer, meta, out_dir, it, keep_last, dist):
    """Every rank writes its shards of the weights and the optimizer state (DCP) into a hidden
    directory; the ranks checksum its files in parallel; rank 0 adds meta.pt and checksums.json,
    renames the directory into place and fsyncs; the ranks verify it; only then rank 0 prunes. A kill
    at any moment leaves the previous checkpoints in place. Call on every rank."""
    path = out_dir / f"{CKPT_PREFIX}{it:08d}"
    tmp = out_dir / f".{path.name}.tmp"
    if dist.master and tmp.exists():
        shutil.rmtree(tmp)  # a kill's leftover
    torch_dist.barrier()
    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=tmp)  # fsyncs its files
    crcs = {name: _crc32(tmp / name) for name in _share([f.name for f in tmp.iterdir()], dist.rank, dist.world_size)}
    gathered = [None] * dist.world_size
    torch_dist.all_gather_object(gathered, crcs)
    if dist.master:
        with open(tmp / META, "wb") as f:
            torch.save(meta, f)
            f.flush()
            os.fsync(f.fileno())
        files = {name: crc for part in gathered for name, crc in part.items()}
        files[META] = _crc32(tmp / META)
        with open(tmp / CHECKSUMS, "w") as f:
            json.dump({"iter": it, "files": files}, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(tmp)
        if path.exists():  # a damaged checkpoint of this iteration that a resume fell back past
            _remove(path)
        os.replace(tmp, path)
        fsync_dir(out_dir)
    torch_dist.barrier()
    why = agree(verify_sharded(path, dist.rank, dist.world_size), dist)
    if why is not None:
        raise RuntimeError(f"checkpoint {path} did not read back correctly ({why}); older checkpoints were kept")
    if dist.master:
        _prune(out_dir, path, keep_last)
    torch_dist.barrier()
    return path


def agree(why, dist):
    """The first rank's reason among all ranks' (None when every rank found nothing wrong)."""
    if not dist.distributed:
        return why
    reasons = [None] * dist.world_size
    torch_dist.all_gather_object(reasons, why)
    return next((r for r in reasons if r is not None), None)


def verify_sharded(path, rank=0, world_size=1):
    """Why the sharded checkpoint at path is damaged, or None: its files must be exactly those of
    checksums.json, and this rank's share of them must match their CRC-32s (one rank: all of them)."""
    try:
        files = json.loads((path / CHECKSUMS).read_text())["files"]
        present = {f.name for f in path.iterdir()} - {CHECKSUMS}
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"no readable {CHECKSUMS}: {type(e).__name__}"
    if present != set(files):
        return f"files missing or unexpected: {', '.join(sorted(present ^ set(files)))}"
    for name in _share(files, rank, world_size):
        if _crc32(path / name) != files[name]:
            return f"checksum mismatch in {name}"
    return None


def read_sharded_meta(path, verify=True):
    """meta.pt of a sharded checkpoint (iteration, config, scaler, ...), after checking every file of it
    in this process when verify."""
    why = verify_sharded(path) if verify else None
    if why is None:
        try:
            return torch.load(path / META, weights_only=True)
        except Exception as e:
            why = f"{META}: {type(e).__name__}"
    raise UserError(damaged(path, why))


def _dcp_load(state, path):
    """dcp.load in place; in one process when there is no process group (DCP warns about that every
    time, though reading a sharded checkpoint in one process is exactly what we mean then)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=path, no_dist=not torch_dist.is_initialized())


def load_sharded(path, model, optimizer):
    """Load a sharded checkpoint's weights and optimizer state into model and optimizer, sharded
    (FSDP) or not: DCP reads each rank's part of every tensor, whatever the number of ranks that wrote
    it. Call on every rank."""
    model_state, optimizer_state = get_state_dict(model, optimizer)
    _dcp_load({"model": model_state, "optimizer": optimizer_state}, path)
    set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state)


def live_tensors(model, optimizer):
    """The tensors of a model's weights and its optimizer's state, as training holds them."""
    return list(model.parameters()) + [v for s in optimizer.state.values() for v in s.values()]


def load_training_state(path, ckpt, model, optimizer, dist):
    """Resume: the checkpoint's optimizer state into optimizer, and a sharded one's weights into model
    (a one-file checkpoint's weights are loaded before the model is sharded). Call on every rank."""
    if is_sharded(path):
        load_sharded(path, model, optimizer)
        why = agree("non-finite weights or optimizer state" if non_finite(live_tensors(model, optimizer)) else None, dist)
        if why is not None:
            raise UserError(damaged(path, why))
    elif isinstance(next(model.parameters()), DTensor):  # a one-file checkpoint into an FSDP run
        load_full_optimizer_state(model, optimizer, ckpt["optimizer"])
    else:
        optimizer.load_state_dict(ckpt["optimizer"])


def load_full_model_state(model: torch.nn.Module, model_state: dict) -> None:
    """A one-file checkpoint's weights into a live model, sharded (FSDP: each rank keeps its shards of
    the full tensors) or not."""
    if isinstance(next(model.parameters()), DTensor):
        set_model_state_dict(model, model_state, options=StateDictOptions(full_state_dict=True))
    else:
        model.load_state_dict(model_state)


def load_full_optimizer_state(model, optimizer, optimizer_state):
    """A one-file checkpoint's optimizer state (torch's format: parameters numbered in param_groups
    order) into an optimizer of sharded (FSDP) parameters: renamed to parameter names, the format
    torch.distributed.checkpoint's set_optimizer_state_dict shards from."""
    name = {id(p): n for n, p in model.named_parameters()}
    names = [name[id(p)] for group in optimizer.param_groups for p in group["params"]]
    by_name = {"state": {names[i]: s for i, s in optimizer_state["state"].items()},
               "param_groups": [{**g, "params": [names[i] for i in g["params"]]}
                                for g in optimizer_state["param_groups"]]}
    set_optimizer_state_dict(model, optimizer, by_name, options=StateDictOptions(full_state_dict=True))


# ----------------------------------------------------------------------------- a run's checkpoints

def find_checkpoint(out_dir, init_from, dist, log, announce=True):
    """(path, checkpoint) to resume from (init_from 'resume' or 'auto'), or (None, None): the newest
    one that verifies, each damaged one skipped with a warning (and the one chosen named, if announce).
    Rank 0 chooses, so that every rank loads the same one; a sharded checkpoint's meta only (its
    tensors are loaded shard-wise)."""
    paths = checkpoint_paths(out_dir)  # every rank sees the same shared out_dir
    if init_from not in ("resume", "auto"):
        if paths:
            raise UserError(f"{out_dir} holds checkpoints of an earlier run and init_from={init_from!r} "
                            f"would overwrite them: continue it with --init_from=auto, or use another out_dir")
        return None, None
    for path in paths:
        ckpt, why = None, None
        if is_sharded(path):  # the ranks checksum its files in parallel
            why = verify_sharded(path, dist.rank, dist.world_size)
        elif dist.master:  # rank 0 verifies the file; the others load it without reading it all once more
            try:
                ckpt = read_checkpoint(path)
            except UserError as e:
                why = str(e)
        why = agree(why, dist)  # all ranks take the same decision
        if why is None:
            if announce:
                log(f"resuming from {path}")
            if ckpt is None:
                ckpt = read_sharded_meta(path, verify=False) if is_sharded(path) else read_checkpoint(path, verify=False)
            return path, ckpt
        log(f"warning: skipping {why if why.startswith('checkpoint ') else damaged(path, why)}")
    if paths:  # never start over silently on top of a run whose every checkpoint is damaged
        raise UserError(f"every checkpoint in {out_dir} is damaged ({', '.join(p.name for p in paths)}): "
                        f"restore them from a copy (check it with `python scripts/tools/verify_checkpoint.py "
                        f"{out_dir}`), or use another out_dir to start over")
    if init_from == "resume":
        raise UserError(f"init_from='resume' but {out_dir} has no checkpoint: "
                        f"use init_from='auto' to start from scratch when there is none")
    return None, None


SHAPE = ("n_layer", "n_head", "n_embd", "block_size", "bias")


def model_from(ckpt, cfg):
    """The GPT of a checkpoint to resume, with its weights when they are in the file (a sharded
    checkpoint's are loaded once the model is sharded), after checking that the config describes the
    same shape."""
    model_args = ckpt["model_args"]
    diff = {k: (model_args[k], getattr(cfg, k)) for k in SHAPE if model_args[k] != getattr(cfg, k)}
    # A run started from pretrained weights has their shape, not its config's: only a run whose
    # config described its model can have been resumed with a config of another shape by mistake.
    described = all(ckpt["config"][k] == model_args[k] for k in SHAPE)
    if diff and described:
        desc = ", ".join(f"{k}={a} (config says {b})" for k, (a, b) in diff.items())
        raise UserError(f"the checkpoint in {cfg.out_dir} has a different model shape: {desc}; "
                        f"use another out_dir or the checkpoint's shape")
    model = GPT(GPTConfig(**{**model_args, "dropout": cfg.dropout}))
    if "model" in ckpt:
        model.load_state_dict(ckpt["model"])
    return model


class Checkpointer:
    """A training run's checkpoints, as torchtitan's CheckpointManager keeps them: it finds the one to
    resume from (init_from 'resume' or 'auto'), checks that it belongs to this run (optimizer, model
    shape, vocabulary), loads it, and saves new ones in the format of the parallelism (one file under
    DDP or in one process; sharded under FSDP), keeping the newest keep_last. Every rank makes one."""

    def __init__(self, cfg, vocab, data_dir, dist, log):
        self.cfg, self.vocab, self.dist, self.log = cfg, vocab, dist, log
        self.out_dir = Path(cfg.out_dir)
        self.path, self.ckpt = find_checkpoint(self.out_dir, cfg.init_from, dist, log)
        if self.ckpt is not None:
            check_same(from_meta(self.ckpt.get("vocab", GPT2), self.path), vocab, self.out_dir, data_dir)
            trained = self.ckpt["config"]["optimizer_name"]
            if trained != cfg.optimizer_name:
                raise UserError(f"the checkpoint in {self.out_dir} was trained with optimizer_name={trained!r}, "
                                f"config says {cfg.optimizer_name!r}: use another out_dir")

    @property
    def resuming(self):
        return self.path is not None

    def model(self):
        """The resumed run's GPT (see model_from)."""
        return model_from(self.ckpt, self.cfg)

    def load(self, model, optimizer, scaler, state):
        """The checkpoint's optimizer state (and a sharded one's weights), fp16 loss scale and the loop's
        counters (into `state`), then the checkpoint is let go. Call on every rank."""
        load_training_state(self.path, self.ckpt, model, optimizer, self.dist)
        if self.ckpt["scaler"] or not scaler.is_enabled():
            scaler.load_state_dict(self.ckpt["scaler"])
        else:  # a bfloat16 or float32 run continued in float16: the scaler starts as a new run's
            self.log("the checkpoint has no fp16 loss scale (its run was not float16): starting from the default")
        state.update({k: self.ckpt[k] for k in state if k in self.ckpt})  # an older checkpoint lacks the newer keys
        self.ckpt = None

    def reload(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               state: dict) -> Path | None:
        """A rollback: the newest valid checkpoint in out_dir into the live model, optimizer, scaler and
        `state`, as load() does for a resume; its path, or None when out_dir has none yet. Call on every rank."""
        path, self.ckpt = find_checkpoint(self.out_dir, "auto", self.dist, self.log, announce=False)
        if path is None:
            return None
        self.path = path
        if not is_sharded(path):  # a sharded checkpoint's weights come with its optimizer state
            load_full_model_state(model, self.ckpt["model"])
        self.load(model, optimizer, scaler, state)
        return path

    def save(self, model, optimizer, scaler, state):
        """Model, optimizer (with Sophia's Hessian), fp16 loss scale and the loop state: one file written
        by rank 0, or under FSDP a sharded checkpoint that every rank writes its part of. Call on every rank."""
        sharded = self.cfg.parallelism == "fsdp"
        if not (sharded or self.dist.master):
            return
        bad = non_finite(live_tensors(model, optimizer))
        if agree("non-finite" if bad else None, self.dist) if sharded else bad:
            raise RuntimeError("the weights or the optimizer state are not finite: no checkpoint written, "
                               "the previous ones are kept")
        meta = {"scaler": scaler.state_dict(), "model_args": asdict(model.config), "config": asdict(self.cfg),
                "vocab": self.vocab, **state}
        if sharded:
            save_sharded(model, optimizer, meta, self.out_dir, state["iter"], self.cfg.keep_last, self.dist)
        else:
            save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(), **meta},
                            self.out_dir, state["iter"], self.cfg.keep_last)


def load_model(source: str | Path, hint: str = "train first (train.py writes one at every eval_interval)"
               ) -> tuple[GPT, dict, str]:
    """(GPT, its vocabulary, what was loaded) for sample.py, export and evaluations, from `source`: a
    run's out_dir (its newest valid checkpoint, each damaged one skipped with a warning on stderr), a
    Hugging Face GPT-2 directory or one of OpenAI's releases. A UserError ending in `hint` when an
    out_dir has no checkpoint."""
    if is_pretrained(str(source)):
        return load_gpt2(str(source)), GPT2, str(source)
    for path in checkpoint_paths(Path(source)):
        try:
            ckpt = read_checkpoint(path)
        except UserError as e:
            print(f"warning: skipping {e}", file=sys.stderr)
            continue
        model = GPT(GPTConfig(**ckpt["model_args"]))
        model.load_state_dict(ckpt["model"])
        return model, from_meta(ckpt.get("vocab", GPT2), path), f"{path} (iter {ckpt['iter']})"
    raise UserError(f"no checkpoint in {source}: {hint}")
