"""Optimizer step time on GPT-2 124M parameter shapes: SophiaG (three paths), Lion and Muon (with AdamW for the
non-matrix parameters, as optimizer_name='muon' trains) against torch's AdamW.

    python scripts/bench/bench_optimizer.py                      # CUDA when present, else CPU
    python scripts/bench/bench_optimizer.py --device cpu --steps 20
    python scripts/bench/bench_optimizer.py --model tiny         # the shapes of config/train_tiny_*.py

Each optimizer is timed over runs of consecutive steps, in two rounds (alternating every step would charge the large
frees of one optimizer's temporaries to the next one's time). Prints the median time of `step()`, its ratio to the
fastest AdamW and to AdamW foreach, the optimizer-state bytes per parameter, and SophiaG's Hessian refresh time.
"""

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from model import GPT, GPTConfig
from optimizers import Lion, MuonWithAdamW
from scripts.bench import timed
from sophia import SophiaG

MODELS = {
    "124m": GPTConfig(n_layer=12, n_head=12, n_embd=768, block_size=1024),
    "tiny": GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per optimizer (after warm-up steps)")
    parser.add_argument("--model", choices=MODELS, default="124m", help="the shapes of GPT-2 124M or the tiny configs")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a GPU and a CUDA build of torch; pass --device cpu")
    with torch.device("meta"):  # the model's parameter shapes in order (the LM head tied to wte), no memory
        shapes = [p.shape for p in GPT(MODELS[args.model]).parameters()]
    torch.manual_seed(0)
    params = [torch.nn.Parameter(0.02 * torch.randn(s, device=device)) for s in shapes]
    for p in params:
        p.grad = 1e-3 * torch.randn_like(p)
    n_params = sum(p.numel() for p in params)

    def groups() -> list[dict]:  # nanoGPT's grouping, weight decay on matrices only; fresh dicts for every optimizer
        gains = [p for p in params if p.dim() < 2]
        return [{"params": [p for p in params if p.dim() >= 2]}, {"params": gains, "weight_decay": 0.0}]

    def muon_with_adamw() -> MuonWithAdamW:  # Muon on the blocks' matrices (params[2:]), AdamW on wte, wpe, gains
        rest = [{"params": params[:2]}, {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        muon = torch.optim.Muon([p for p in params[2:] if p.dim() == 2], lr=0.02, weight_decay=0.01)
        return MuonWithAdamW(muon, torch.optim.AdamW(rest, lr=6e-4, betas=(0.9, 0.95), foreach=True))

    candidates = {
        "AdamW foreach": lambda: torch.optim.AdamW(groups(), lr=6e-4, betas=(0.9, 0.95), foreach=True),
        "AdamW fused": lambda: torch.optim.AdamW(groups(), lr=6e-4, betas=(0.9, 0.95), fused=True),
        "SophiaG per-tensor": lambda: SophiaG(groups(), lr=6e-4, rho=0.05, weight_decay=0.2, foreach=False),
        "SophiaG foreach": lambda: SophiaG(groups(), lr=6e-4, rho=0.05, weight_decay=0.2, foreach=True),
        "SophiaG fused": lambda: SophiaG(groups(), lr=6e-4, rho=0.05, weight_decay=0.2, fused=True),
        "Lion": lambda: Lion(groups(), lr=1e-4, betas=(0.95, 0.98)),
        "Muon + AdamW": muon_with_adamw,
    }
    if device.type == "cpu" and args.model == "124m":  # torch's Newton-Schulz runs in bf16: slow on most CPUs
        print("skipping Muon + AdamW: its bf16 Newton-Schulz is very slow at 124M on a CPU; use --model tiny or a GPU")
        del candidates["Muon + AdamW"]
    optimizers = {}
    for name, make in candidates.items():
        try:
            optimizers[name] = make()
        except RuntimeError as e:  # e.g. fused AdamW on a device without the kernel
            print(f"skipping {name}: {e}")

    def timed_ms(fn: Callable[[], Any], warmup: int, repeats: int) -> list[float]:
        for _ in range(warmup):
            fn()
        return [1e3 * timed(fn, device) for _ in range(repeats)]

    t0 = time.perf_counter()
    for opt in optimizers.values():
        if isinstance(opt, SophiaG):  # a nonzero h, as in training
            opt.update_hessian(num_tokens=480 * 1024)
    step_ms = {name: [] for name in optimizers}
    hessian_ms = {name: [] for name, opt in optimizers.items() if isinstance(opt, SophiaG)}
    for round_ in range(2):  # two rounds over the optimizers, so that slow drifts in load hit all of them
        for name, opt in optimizers.items():
            step_ms[name] += timed_ms(opt.step, 3 if round_ == 0 else 1, (args.steps + 1) // 2)
            if name in hessian_ms:
                hessian_ms[name] += timed_ms(partial(opt.update_hessian, num_tokens=480 * 1024), 0, 2)
    median = {name: statistics.median(ts) for name, ts in step_ms.items()}
    hessian_median = {name: statistics.median(ts) for name, ts in hessian_ms.items()}
    best_adamw = min(ms for name, ms in median.items() if name.startswith("AdamW"))
    adamw_foreach = median.get("AdamW foreach", float("nan"))
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    shapes = f"GPT-2 {args.model} shapes ({n_params / 1e6:.2f}M params, fp32) on {device} ({gpu})"
    print(f"{shapes}, torch {torch.__version__}, median of {2 * ((args.steps + 1) // 2)} steps")
    print(f"{'optimizer':<20} {'ms/step':>9} {'x best AdamW':>13} {'x AdamW foreach':>16} {'state B/param':>14}")
    for name, ms in median.items():
        state = [t for s in optimizers[name].state.values() for t in s.values() if torch.is_tensor(t)]
        per_param = sum(t.numel() * t.element_size() for t in state) / n_params
        print(f"{name:<20} {ms:>9.1f} {ms / best_adamw:>13.2f} {ms / adamw_foreach:>16.2f} {per_param:>14.2f}")
    for name, ms in hessian_median.items():
        print(f"{name} update_hessian: {ms:.1f} ms per call ({ms / 10:.1f} ms per step at k=10)")
    print(f"timed loop: {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
