"""Checkpoints (docs/reliability.md): one file (DDP, one process) or a directory of DCP shards (FSDP), written
atomically and verified on every read. `Checkpointer` is train.py's; `load_model` gives tools a run's newest model."""

import json
import os
import shutil
import sys
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist
import torch.distributed.checkpoint as dcp
import torch.distributed.checkpoint.state_dict as sd
from torch.amp import GradScaler
from torch.distributed.tensor import DTensor
from torch.nn import Module
from torch.optim import Optimizer

from atomic import atomic_write, fsync_dir
from errors import UserError
from hf import is_pretrained, load_gpt2
from model import GPT, GPTConfig
from parallel import Dist
from vocab import GPT2, check_same, from_meta

CKPT_PREFIX = "ckpt_"
META, CHECKSUMS = "meta.pt", "checksums.json"  # in a sharded checkpoint's directory, next to DCP's files
SHAPE = ("n_layer", "n_head", "n_embd", "block_size", "bias")
FULL = sd.StateDictOptions(full_state_dict=True)  # a one-file checkpoint's whole tensors into an FSDP-sharded model
Log = Callable[[str], None]


def checkpoint_paths(out_dir: Path) -> list[Path]:
    """Complete checkpoints in out_dir (ckpt_N.pt files, ckpt_N directories), newest first; unfinished are hidden."""
    found = []
    for p in out_dir.glob(f"{CKPT_PREFIX}*"):
        number = p.name[len(CKPT_PREFIX) :] if p.is_dir() else p.name[len(CKPT_PREFIX) : -3]
        if (p.is_dir() or p.suffix == ".pt") and number.isdigit():
            found.append((int(number), p))
    return [p for _, p in sorted(found, reverse=True)]


def is_sharded(path: Path) -> bool:
    return path.is_dir()


def _why(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def verify_file(path: Path) -> str | None:
    """Why the checkpoint file at path is damaged, or None; checks every zip entry's CRC-32 (torch.load never does)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as e:
        return f"not a readable archive: {_why(e)}"
    return f"checksum mismatch in {bad}" if bad else None


def finite_by_device(tensors: Iterable[Any]) -> dict[torch.device, torch.Tensor]:
    """{device: 0-dim bool tensor, are its floating-point tensors finite} (DTensors: this rank's shard), one reduction
    per device: an optimizer's `step` counters stay on the CPU."""
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for t in tensors:
        if torch.is_tensor(t) and t.is_floating_point():
            local = t.to_local() if isinstance(t, DTensor) else t
            if local.numel():
                by_device.setdefault(local.device, []).append(local)
    return {device: torch.isfinite(torch.stack(torch._foreach_norm(ts))).all() for device, ts in by_device.items()}


def non_finite(tensors: Iterable[Any]) -> bool:
    """Whether any floating-point tensor among `tensors` holds a NaN or an infinity (DTensors: this rank's shard)."""
    return not all(bool(finite) for finite in finite_by_device(tensors).values())


def state_tensors(model_state: dict, optimizer_state: dict) -> list[Any]:
    return list(model_state.values()) + [v for s in optimizer_state.get("state", {}).values() for v in s.values()]


def live_tensors(model: Module, optimizer: Optimizer) -> list[Any]:
    return list(model.parameters()) + [v for s in optimizer.state.values() for v in s.values()]


def damaged(path: Path, why: str) -> str:
    why = f"checkpoint {path} is damaged or unreadable ({why}); "
    return why + "delete it (or restore it from a copy) to resume from an older one"


def read_checkpoint(path: Path, verify: bool = True) -> dict:
    """Load a checkpoint (weights_only), with verify a UserError if damaged; a sharded one without its optimizer."""
    if is_sharded(path):
        meta = read_sharded_meta(path, verify=verify)
        model = GPT(GPTConfig(**meta["model_args"]))
        state = {"model": sd.get_model_state_dict(model)}
        _dcp_load(state, path)
        if verify and non_finite(state["model"].values()):
            raise UserError(damaged(path, "non-finite weights"))
        model.load_state_dict(state["model"])
        return {**meta, "model": model.state_dict()}
    why = verify_file(path) if verify else None
    if why is None:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:
            why = _why(e)
    if why is not None:
        raise UserError(damaged(path, why))
    missing = {"model", "optimizer", "iter", "model_args"} - set(ckpt)
    if missing:
        raise UserError(f"checkpoint {path} lacks {sorted(missing)}: it was not written by this train.py")
    if verify and non_finite(state_tensors(ckpt["model"], ckpt["optimizer"])):
        raise UserError(damaged(path, "non-finite weights or optimizer state"))
    return ckpt


def _remove(path: Path) -> None:
    """Delete a checkpoint; a directory is first renamed out of sight: a kill never leaves half of one named valid."""
    if not is_sharded(path):
        return path.unlink()
    doomed = path.with_name(f".{path.name}.deleting")
    os.replace(path, doomed)
    shutil.rmtree(doomed)


def _prune(out_dir: Path, path: Path, keep_last: int) -> None:
    """Keep the keep_last newest up to path; later ones were left by an abandoned attempt (a resume fell back past)."""
    paths = checkpoint_paths(out_dir)
    i = paths.index(path)
    for old in paths[:i] + paths[i + keep_last :]:
        _remove(old)


def write_file(state: dict, path: Path) -> None:
    with atomic_write(path, "wb") as f:
        torch.save(state, f)


def save_checkpoint(state: dict, out_dir: Path, it: int, keep_last: int) -> Path:
    """Write atomically, verify that the new file loads, and only then prune: a kill leaves the previous one."""
    path = out_dir / f"{CKPT_PREFIX}{it:08d}.pt"
    write_file(state, path)
    if read_checkpoint(path)["iter"] != it:
        raise RuntimeError(f"checkpoint {path} did not read back correctly; older checkpoints were kept")
    _prune(out_dir, path, keep_last)
    return path


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return crc


def save_sharded(model: Module, optimizer: Optimizer, meta: dict, out_dir: Path, keep_last: int, dist: Dist) -> Path:
    """Write a sharded checkpoint as docs/reliability.md describes, verify it, then prune. All ranks call."""
    path = out_dir / f"{CKPT_PREFIX}{meta['iter']:08d}"
    tmp = out_dir / f".{path.name}.tmp"
    if dist.master and tmp.exists():
        shutil.rmtree(tmp)  # a kill's leftover
    torch_dist.barrier()
    model_state, optimizer_state = sd.get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=tmp)  # fsyncs its files
    crcs = {name: _crc32(tmp / name) for name in sorted(f.name for f in tmp.iterdir())[dist.rank :: dist.world_size]}
    gathered: list[Any] = [None] * dist.world_size
    torch_dist.all_gather_object(gathered, crcs)
    if dist.master:
        write_file(meta, tmp / META)
        files = {name: crc for part in gathered for name, crc in part.items()} | {META: _crc32(tmp / META)}
        with atomic_write(tmp / CHECKSUMS) as f:
            json.dump({"iter": meta["iter"], "files": files}, f, indent=1, sort_keys=True)
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


def agree(why: str | None, dist: Dist) -> str | None:
    """The first rank's reason among all ranks' (None when every rank found nothing wrong)."""
    if not dist.distributed:
        return why
    reasons: list[str | None] = [None] * dist.world_size
    torch_dist.all_gather_object(reasons, why)
    return next((r for r in reasons if r is not None), None)


def verify_sharded(path: Path, rank: int = 0, world_size: int = 1) -> str | None:
    """Why the sharded checkpoint at path is damaged, or None; checks its file list and CRC-32s (this rank's share)."""
    try:
        files = json.loads((path / CHECKSUMS).read_text())["files"]
        present = {f.name for f in path.iterdir()} - {CHECKSUMS}
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"no readable {CHECKSUMS}: {type(e).__name__}"
    if present != set(files):
        return f"files missing or unexpected: {', '.join(sorted(present ^ set(files)))}"
    for name in sorted(files)[rank::world_size]:
        if _crc32(path / name) != files[name]:
            return f"checksum mismatch in {name}"
    return None


def read_sharded_meta(path: Path, verify: bool = True) -> dict:
    """meta.pt of a sharded checkpoint, after checking every file of it in this process when verify."""
    why = verify_sharded(path) if verify else None
    if why is None:
        try:
            return torch.load(path / META, weights_only=True)
        except Exception as e:
            why = f"{META}: {type(e).__name__}"
    raise UserError(damaged(path, why))


def _dcp_load(state: dict, path: Path) -> None:
    """dcp.load in place, in one process when there is no process group (silencing DCP's warning about just that)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=path, no_dist=not torch_dist.is_initialized())


def load_sharded(path: Path, model: Module, optimizer: Optimizer) -> None:
    """A sharded checkpoint into model and optimizer, FSDP or not, whatever ranks wrote it. Call on every rank."""
    model_state, optimizer_state = sd.get_state_dict(model, optimizer)
    _dcp_load({"model": model_state, "optimizer": optimizer_state}, path)
    sd.set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state)


def find_checkpoint(out_dir: Path, init_from: str, dist: Dist, log: Log, announce: bool = True) -> tuple[Any, Any]:
    """(path, checkpoint) to resume from, or (None, None): the newest that verifies, the same on all ranks."""
    paths = checkpoint_paths(out_dir)  # every rank sees the same shared out_dir
    if init_from not in ("resume", "auto"):
        if paths:
            fix = "overwrite them: continue it with --init_from=auto, or use another out_dir"
            raise UserError(f"{out_dir} holds checkpoints of an earlier run and init_from={init_from!r} would {fix}")
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
        why = agree(why, dist)
        if why is None:
            if announce:
                log(f"resuming from {path}")
            if ckpt is None:
                ckpt = read_sharded_meta(path, False) if is_sharded(path) else read_checkpoint(path, verify=False)
            return path, ckpt
        log(f"warning: skipping {why if why.startswith('checkpoint ') else damaged(path, why)}")
    if paths:  # never start over silently on top of a run whose every checkpoint is damaged
        names, tool = ", ".join(p.name for p in paths), "python scripts/tools/verify_checkpoint.py"
        fix = f"restore them from a copy (check it with `{tool} {out_dir}`), or use another out_dir to start over"
        raise UserError(f"every checkpoint in {out_dir} is damaged ({names}): {fix}")
    if init_from == "resume":
        fix = "use init_from='auto' to start from scratch when there is none"
        raise UserError(f"init_from='resume' but {out_dir} has no checkpoint: {fix}")
    return None, None


def model_from(ckpt: dict, cfg: Any) -> GPT:
    """The GPT of a checkpoint to resume (with its weights when the file has them), if the config has its shape."""
    model_args = ckpt["model_args"]
    diff = {k: (model_args[k], getattr(cfg, k)) for k in SHAPE if model_args[k] != getattr(cfg, k)}
    # Only a run whose config described its model (not pretrained weights) can be resumed with another shape by mistake.
    if diff and all(ckpt["config"][k] == model_args[k] for k in SHAPE):
        desc = ", ".join(f"{k}={a} (config says {b})" for k, (a, b) in diff.items())
        fix = "use another out_dir or the checkpoint's shape"
        raise UserError(f"the checkpoint in {cfg.out_dir} has a different model shape: {desc}; {fix}")
    model = GPT(GPTConfig(**{**model_args, "dropout": cfg.dropout}))
    if "model" in ckpt:
        model.load_state_dict(ckpt["model"])
    return model


class Checkpointer:
    """A run's checkpoints, as torchtitan's CheckpointManager: find, check it is this run's, load, save. Per rank."""

    def __init__(self, cfg: Any, vocab: dict, data_dir: Path, dist: Dist, log: Log) -> None:
        self.cfg, self.vocab, self.dist, self.log = cfg, vocab, dist, log
        self.out_dir = Path(cfg.out_dir)
        self.path, self.ckpt = path, ckpt = find_checkpoint(self.out_dir, cfg.init_from, dist, log)
        if path is not None and ckpt is not None:
            check_same(from_meta(ckpt.get("vocab", GPT2), path), vocab, self.out_dir, data_dir)
            trained = ckpt["config"]["optimizer_name"]
            if trained != cfg.optimizer_name:
                said = f"optimizer_name={trained!r}, config says {cfg.optimizer_name!r}"
                raise UserError(f"the checkpoint in {self.out_dir} was trained with {said}: use another out_dir")

    @property
    def resuming(self) -> bool:
        return self.path is not None

    def model(self) -> GPT:
        assert self.ckpt is not None
        return model_from(self.ckpt, self.cfg)

    def load(self, model: Module, optimizer: Optimizer, scaler: GradScaler, state: dict) -> None:
        """The checkpoint's optimizer state (a sharded one's weights too: one-file weights go in before sharding), fp16
        loss scale and the loop's counters (into `state`), then the checkpoint is let go. Call on every rank."""
        path, ckpt = self.path, self.ckpt
        assert path is not None and ckpt is not None
        if is_sharded(path):
            load_sharded(path, model, optimizer)
            bad = non_finite(live_tensors(model, optimizer))
            why = agree("non-finite weights or optimizer state" if bad else None, self.dist)
            if why is not None:
                raise UserError(damaged(path, why))
        elif isinstance(next(model.parameters()), DTensor):  # an FSDP-sharded model
            # torch's format numbers parameters in param_groups order; DCP shards from parameter names
            name = {id(p): n for n, p in model.named_parameters()}
            names = [name[id(p)] for group in optimizer.param_groups for p in group["params"]]
            opt = ckpt["optimizer"]
            groups = [{**g, "params": [names[i] for i in g["params"]]} for g in opt["param_groups"]]
            by_name: dict[str, Any] = {"state": {names[i]: s for i, s in opt["state"].items()}, "param_groups": groups}
            sd.set_optimizer_state_dict(model, optimizer, by_name, options=FULL)
        else:
            optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt["scaler"] or not scaler.is_enabled():
            scaler.load_state_dict(ckpt["scaler"])
        else:
            self.log("the checkpoint has no fp16 loss scale (its run was not float16): starting from the default")
        state.update({k: ckpt[k] for k in state if k in ckpt})  # an older checkpoint lacks the newer keys
        self.ckpt = None

    def reload(self, model: Module, optimizer: Optimizer, scaler: GradScaler, state: dict) -> Path | None:
        """A rollback: the newest valid checkpoint loaded as for a resume; its path, or None. Call on every rank."""
        path, self.ckpt = find_checkpoint(self.out_dir, "auto", self.dist, self.log, announce=False)
        if path is None or self.ckpt is None:
            return None
        self.path = path
        if not is_sharded(path):  # a sharded checkpoint's weights come with its optimizer state, in load()
            if isinstance(next(model.parameters()), DTensor):  # an FSDP-sharded model
                sd.set_model_state_dict(model, self.ckpt["model"], options=FULL)
            else:
                model.load_state_dict(self.ckpt["model"])
        self.load(model, optimizer, scaler, state)
        return path

    def save(self, model: Module, optimizer: Optimizer, scaler: GradScaler, state: dict) -> None:
        """One file written by rank 0, or under FSDP a sharded checkpoint that every rank writes. Call on every rank."""
        sharded = self.cfg.parallelism == "fsdp"
        if not (sharded or self.dist.master):
            return
        bad = non_finite(live_tensors(model, optimizer))
        if agree("non-finite" if bad else None, self.dist) if sharded else bad:
            kept = "no checkpoint written, the previous ones are kept"
            raise RuntimeError(f"the weights or the optimizer state are not finite: {kept}")
        config: Any = model.config
        meta = {"scaler": scaler.state_dict(), "model_args": asdict(config), "config": asdict(self.cfg)}
        meta |= {"vocab": self.vocab, **state}
        if sharded:
            save_sharded(model, optimizer, meta, self.out_dir, self.cfg.keep_last, self.dist)
        else:
            model_state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
            save_checkpoint(model_state | meta, self.out_dir, state["iter"], self.cfg.keep_last)


def load_model(
    source: str | Path, hint: str = "train first (train.py writes one at every eval_interval)"
) -> tuple[GPT, dict, str]:
    """(GPT, vocabulary, what was loaded) of a run's newest valid checkpoint, an OpenAI release or an HF directory."""
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
