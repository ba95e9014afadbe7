"""A run's metrics: metrics.jsonl in its out_dir, always, and wandb when wandb_log is set."""
import json
import math
import os

from atomic import atomic_write
from errors import UserError


class MetricsLog:
    """metrics.jsonl in out_dir (always) and wandb (when wandb_log); rank 0 only. Every row has
    iter, tokens_seen and time_s. After a resume, rows past the checkpoint's iteration are dropped
    first, so the file never has duplicated or missing rows."""

    def __init__(self, out_dir, resume_iter, wandb_run):
        self.path = out_dir / "metrics.jsonl"
        self.wandb_run = wandb_run
        self.file = None
        self.truncate(resume_iter)

    def truncate(self, last_iter: int | None) -> None:
        """Keep only the rows up to iteration last_iter (None: none), as a resume or a rollback to it needs."""
        if self.file is not None:
            self.file.close()
        rows = []
        if last_iter is not None and self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a crash
                if row["iter"] <= last_iter:
                    rows.append(line)
        with atomic_write(self.path) as f:
            f.write("".join(line + "\n" for line in rows))
        self.file = open(self.path, "a")

    def log(self, row):
        row = {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in row.items()}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if self.wandb_run is not None:
            self.wandb_run.log(row, step=row["iter"])

    def close(self):
        self.file.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def start_wandb(cfg, out_dir, run_id, config):
    """Start (or, with the checkpoint's run id, continue) the wandb run; a new run's id is wandb's choice."""
    import wandb
    name = cfg.wandb_run_name or out_dir.name
    try:
        return wandb.init(project=cfg.wandb_project, name=name, id=run_id, resume="allow",
                          config=config, dir=os.environ.get("WANDB_DIR") or str(out_dir))
    except Exception as e:
        raise UserError(f"wandb could not start ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}): "
                        f"run `wandb login`, or set WANDB_MODE=offline, or pass --wandb_log=False") from None
