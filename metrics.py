"""A run's metrics: metrics.jsonl in its out_dir and wandb (when wandb_log); and the one reader of metrics.jsonl."""

import json
import math
import os
from pathlib import Path
from typing import Any, TextIO

from atomic import atomic_write
from errors import UserError
from train_config import TrainConfig


class MetricsLog:
    """Rank 0's metrics; a resume first drops the rows past its checkpoint, so no row is duplicated or missing."""

    def __init__(self, out_dir: Path, resume_iter: int | None, wandb_run: Any) -> None:
        self.path = out_dir / "metrics.jsonl"
        self.wandb_run = wandb_run
        self.file: TextIO | None = None
        self.truncate(resume_iter)

    def truncate(self, last_iter: int | None) -> None:
        """Keep only the rows up to iteration last_iter (None: none), as a resume or a rollback to it needs."""
        if self.file is not None:
            self.file.close()
        rows = []
        if last_iter is not None and self.path.exists():
            rows = [row for row in read_metrics(self.path) if row["iter"] <= last_iter]
        with atomic_write(self.path) as f:
            f.write("".join(json.dumps(row) + "\n" for row in rows))
        self.file = open(self.path, "a")

    def log(self, row: dict[str, Any]) -> None:
        row = {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in row.items()}
        assert self.file is not None, "a MetricsLog is open from its construction to close()"
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if self.wandb_run is not None:
            self.wandb_run.log(row, step=row["iter"])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def read_metrics(path: Path) -> list[dict]:
    """The rows of a metrics.jsonl; a half-written last line is left out, a broken line elsewhere is a UserError."""
    text = Path(path).read_text()
    lines = text.splitlines()
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if lineno == len(lines) and not text.endswith("\n"):
                break
            raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg}); fix or delete that line") from None
    return rows


def start_wandb(cfg: TrainConfig, out_dir: Path, run_id: str | None, config: dict[str, Any]) -> Any:
    """Start (or, with the checkpoint's run id, continue) the wandb run; a new run's id is wandb's choice."""
    import wandb

    name, where = cfg.wandb_run_name or out_dir.name, os.environ.get("WANDB_DIR") or str(out_dir)
    try:
        return wandb.init(project=cfg.wandb_project, name=name, id=run_id, resume="allow", config=config, dir=where)
    except Exception as e:
        raise UserError(
            f"wandb could not start ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}): "
            f"run `wandb login`, or set WANDB_MODE=offline, or pass --wandb_log=False"
        ) from None
