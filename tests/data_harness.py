"""
Test harness for the data prepare scripts: runs one as `__main__` in this process, after
test-only patches, so tests can exercise situations that are hard to cause for real.

    python tests/data_harness.py [options] -- data/openwebtext/prepare.py --data_path ...

--free_bytes N     shutil.disk_usage reports N bytes free (a full disk)
--fail_after K     the K-th progress-bar update raises --fail_with (mid-write failure)
--fail_with NAME   KeyboardInterrupt (Ctrl-C) or ENOSPC (disk full while writing)
--task_bytes N     data.common.TASK_TEXT_BYTES = N (tasks of the same size for small and big data)
--peak_memory      print {"peak_anon_mb": ...} at exit: the peak of anonymous memory (Pss_Anon)
                   summed over this process and its children, sampled every 5 ms. Anonymous
                   memory is what the prepare path allocates; file-backed pages of memory-mapped
                   Arrow inputs are left out (reclaimable page cache, not allocations).
"""

import argparse
import atexit
import errno
import json
import os
import runpy
import shutil
import sys
import threading
import time

import data.common as common


def anon_kb(pid):
    """Proportional anonymous memory of a process: pages shared copy-on-write with forked
    workers are split among them, so the sum over processes counts every page once."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Pss_Anon:"))
    except (OSError, StopIteration):
        return 0


def descendants(pid):
    children = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                children += [int(c) for c in f.read().split()]
    except OSError:
        return children
    return children + [d for c in children for d in descendants(c)]


def track_peak_memory():
    peak = [0]

    def sample():
        while True:
            me = os.getpid()
            peak[0] = max(peak[0], sum(anon_kb(p) for p in [me, *descendants(me)]))
            time.sleep(0.005)

    threading.Thread(target=sample, daemon=True).start()
    atexit.register(lambda: print(json.dumps({"peak_anon_mb": peak[0] / 1024}), flush=True))


def main():
    argv = sys.argv[1:]
    split = argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("--free_bytes", type=int)
    parser.add_argument("--fail_after", type=int)
    parser.add_argument("--fail_with", choices=("KeyboardInterrupt", "ENOSPC"))
    parser.add_argument("--task_bytes", type=int)
    parser.add_argument("--peak_memory", action="store_true")
    args = parser.parse_args(argv[:split])

    if args.free_bytes is not None:
        usage = shutil.disk_usage(".")
        shutil.disk_usage = lambda path: usage._replace(free=args.free_bytes)
    if args.fail_after is not None:
        updates = [0]

        class FailingTqdm(common.tqdm):
            def update(self, n=1):
                updates[0] += 1
                if updates[0] == args.fail_after:
                    if args.fail_with == "ENOSPC":
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    raise KeyboardInterrupt
                return super().update(n)

        common.tqdm = FailingTqdm
    if args.task_bytes is not None:
        common.TASK_TEXT_BYTES = args.task_bytes
    if args.peak_memory:
        track_peak_memory()
    sys.argv = argv[split + 1 :]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
