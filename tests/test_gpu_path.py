"""The GPU defaults, run on CPU on every commit on character-level data (a small LM head):
torch.compile (inductor) with bf16 autocast, through Hessian refreshes and evaluations, for Sophia-G
(foreach and fused step), AdamW, Lion and Muon, in one process and on 2 gloo ranks, and Sophia-H's
double backward. The loss falls, bf16 stays close to fp32, and after a warm-up run that compiles
each graph once (training step, Hessian refresh, eval, fused optimizer step), nothing compiles
again: not the next refreshes or evals, not another run.

Compiling is the cost here (~17 s per graph on 2 cores, less from the module's shared inductor
cache), and bf16 matmuls without native CPU support take ~8x fp32's time, so every run is 64
tokens per step and every compiling process trains all the optimizers."""

import pytest
import torch
import torch._dynamo.utils

import train
from tests.helpers import metrics_rows, tiny_args, train_in_one_launch
from tests.runs_harness import compiled_graphs

# 4 iterations of 2 micro-batches of 2 x 16 tokens: Hessian refreshes after iterations 2 and 4, evals
# at 0, 2 and 4
SMALL = dict(
    block_size=16,
    batch_size=2,
    total_batch_size=4,
    eval_iters=1,
    max_iters=4,
    eval_interval=2,
    hess_interval=2,
    warmup_iters=1,
    learning_rate=1e-2,
    log_interval=1,
)
WARM_UP = dict(optimizer_name="sophiag", fused_optimizer=True, max_iters=1, eval_interval=1, hess_interval=1)
OPTIMIZERS = {
    "sophiag": dict(optimizer_name="sophiag"),
    "sophiag_fused": dict(optimizer_name="sophiag", fused_optimizer=True),
    "adamw": dict(optimizer_name="adamw"),
    "lion": dict(optimizer_name="lion"),
    "muon": dict(optimizer_name="muon", muon_adamw_lr=3e-2),
}  # its AdamW part (the embeddings) moves the loss here
GPU_PATH = dict(compile=True, dtype="bfloat16")
# |bf16 compiled - fp32 eager| of every logged train loss and eval loss: measured at most 0.009
# (Muon; Sophia-G 0.0010, AdamW 0.0011, Lion 0.0069; the same on 2 ranks), so that a bf16 or compile
# bug shows, not rounding
BF16_TOLERANCE = 0.03
MIN_FALL = 0.2  # of the val loss from ln(80) = 4.38 (80 characters) in 4 steps: measured 0.52 (AdamW) to 0.87 (Muon)


def args(data, out, **overrides):
    return tiny_args(data, out, **{**SMALL, **overrides})


@pytest.fixture(scope="module")
def inductor_cache(tmp_path_factory):
    """One inductor cache for every compiling process of this module (compiled kernels are reused)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path_factory.mktemp("inductor")))
        yield


@pytest.fixture(scope="module")
def one_process(shakespeare_char, tmp_path_factory, inductor_cache):
    """Every optimizer on the GPU path in this process after a warm-up run, each also in fp32 eager:
    (graphs before the runs, graphs after, {name: metrics rows}, {name: fp32 metrics rows})."""
    out = tmp_path_factory.mktemp("one_process")
    torch._dynamo.reset()  # as if this were a fresh process
    train.main(args(shakespeare_char, out / "warm_up", **GPU_PATH, **WARM_UP))
    warm = compiled_graphs()
    rows, fp32 = {}, {}
    for name, overrides in OPTIMIZERS.items():
        train.main(args(shakespeare_char, out / name, **GPU_PATH, **overrides))
        rows[name] = metrics_rows(out / name)
    after = compiled_graphs()
    for name, overrides in OPTIMIZERS.items():  # the fused step equals the foreach one in fp32: one reference
        if name != "sophiag_fused":
            train.main(args(shakespeare_char, out / f"{name}_fp32", **overrides))
            fp32[name] = metrics_rows(out / f"{name}_fp32")
    fp32["sophiag_fused"] = fp32["sophiag"]
    yield warm, after, rows, fp32
    torch._dynamo.reset()


@pytest.fixture(scope="module")
def two_ranks(shakespeare_char, tmp_path_factory, inductor_cache):
    """The same runs (warm-up first) in one torchrun with 2 gloo ranks: ({name: rank 0's metrics
    rows}, [graphs after each run on rank 0], [... on rank 1])."""
    out = tmp_path_factory.mktemp("two_ranks")
    names = ["warm_up", *OPTIMIZERS]
    runs = [
        args(shakespeare_char, out / name, **GPU_PATH, **({**WARM_UP} if name == "warm_up" else OPTIMIZERS[name]))
        for name in names
    ]
    counts = train_in_one_launch(runs, out)
    return {name: metrics_rows(out / name) for name in OPTIMIZERS}, *counts


def evals(rows):
    return [r["val/loss"] for r in rows if "val/loss" in r]


def train_losses(rows):
    return [r["train/loss"] for r in rows if "train/loss" in r]


def assert_close_to_fp32(rows, reference):
    assert [r["iter"] for r in rows] == [r["iter"] for r in reference]
    gaps = [abs(a - b) for a, b in zip(train_losses(rows) + evals(rows), train_losses(reference) + evals(reference))]
    assert max(gaps) < BF16_TOLERANCE, gaps


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_compiled_bf16_learns_and_stays_close_to_fp32(one_process, name):
    _, _, rows, fp32 = one_process
    assert len(evals(rows[name])) == 3 and rows[name][-1]["iter"] == 4
    assert evals(rows[name])[-1] < evals(rows[name])[0] - MIN_FALL, evals(rows[name])
    assert_close_to_fp32(rows[name], fp32[name])
    if name.startswith("sophia"):
        last = [r for r in rows[name] if "train/loss" in r][-1]
        assert last["skipped_hessian"] == 0 and last["optim/hessian_norm"] > 0


def test_after_warm_up_refreshes_evals_and_other_runs_compile_nothing(one_process):
    warm, after, _, _ = one_process
    assert warm >= 3  # at least the training step, the Hessian refresh and the eval
    assert after == warm


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_two_gloo_ranks_compiled_bf16_match_one_fp32_process(two_ranks, one_process, name):
    rows, fp32 = two_ranks[0], one_process[3]
    assert evals(rows[name])[-1] < evals(rows[name])[0] - MIN_FALL
    assert_close_to_fp32(rows[name], fp32[name])


def test_two_gloo_ranks_compile_nothing_after_warm_up(two_ranks):
    _, rank0, rank1 = two_ranks
    assert rank0[0] >= 3 and rank1[0] >= 3
    assert rank0 == [rank0[0]] * len(rank0) and rank1 == [rank1[0]] * len(rank1)


def test_sophia_h_double_backward_under_compile(one_process, shakespeare_char, tmp_path):
    """Sophia-H's Hutchinson refresh needs double backward, which compiled graphs do not have: it
    runs on the uncompiled model (math attention kernel) while the training step stays compiled."""
    before = compiled_graphs()
    # a refresh after step 2: step 3's logged hessian_norm is of the state that step used
    train.main(args(shakespeare_char, tmp_path, **GPU_PATH, optimizer_name="sophiah", max_iters=3, eval_interval=3))
    rows = metrics_rows(tmp_path)
    last = [r for r in rows if "train/loss" in r][-1]
    assert last["skipped_hessian"] == 0 and last["optim/hessian_norm"] > 0
    assert all(torch.isfinite(torch.tensor(train_losses(rows))))
    assert compiled_graphs() == before
