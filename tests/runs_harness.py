"""
Trains several configurations one after the other in this one process (under torchrun: on every
rank, one process group for all of them; DDP and FSDP runs may alternate) and writes how many graphs
torch.compile has made after each, so that a test can check that nothing compiles again after the
first (warm-up) run. One launch instead of one per run: each launch costs seconds of start-up.

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/runs_harness.py RUNS.json OUT [FAULTS]
RUNS.json holds a list of train.py argument lists; OUT<rank>.json receives the list of counts; FAULTS are
tests/train_harness.py's options (e.g. --spike_at_iter 5), applied to every run.
"""

import json
import os
import sys
from pathlib import Path

import torch._dynamo.utils
import torch.distributed as torch_dist

import train
from parallel import setup_distributed
from tests import train_harness


def compiled_graphs():
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


def main():
    runs, out = json.loads(Path(sys.argv[1]).read_text()), sys.argv[2]
    if sys.argv[3:]:
        train_harness.patch(train_harness.parse(sys.argv[3:]))
    cfgs = [train.parse_args(args) for args in runs]
    dist = setup_distributed(cfgs[0])
    counts = []
    try:
        for cfg in cfgs:
            train.train(cfg, dist)
            counts.append(compiled_graphs())
    finally:
        if dist.distributed:
            torch_dist.destroy_process_group()
    Path(f"{out}{os.environ.get('RANK', '0')}.json").write_text(json.dumps(counts))


if __name__ == "__main__":
    main()
