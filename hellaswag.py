"""HellaSwag accuracy of a GPT: the downstream number that GPT-2 reproductions report beside val loss.

`acc` picks the ending with the lowest summed loss over its tokens, `acc_norm` the lowest mean (llm.c's definitions).
Rows are padded to a few fixed lengths, so torch.compile sees a few shapes, and the fixed batches are dealt out over
the ranks, all running the same number of forward passes (FSDP needs all ranks in each). Run by train.py
(--hellaswag_interval) and scripts/tools/eval_hellaswag.py on data/hellaswag/prepare.py's file; docs/evals.md.
"""

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import Tensor

from errors import UserError
from provenance import REPO
from vocab import GPT2, GPT2_VOCAB_SIZE, Vocab, describe

DEFAULT_DATA = REPO / "data" / "hellaswag" / "val.npz"
MIN_LENGTH = 32  # the shortest padded row length
PREPARE = "python data/hellaswag/prepare.py"
Device = torch.device | str


@dataclass
class Example:
    """One HellaSwag example as token ids: the context, the 4 endings (with their leading space), the right one."""

    ctx: np.ndarray
    endings: list[np.ndarray]
    label: int

    def rows(self, block_size: int) -> list[tuple[np.ndarray, int]]:
        """The 4 rows (context + ending, its last block_size + 1 tokens), each with how many last tokens are scored."""
        rows = [np.concatenate([self.ctx, ending])[-(block_size + 1) :] for ending in self.endings]
        return [(row, min(len(ending), len(row) - 1)) for row, ending in zip(rows, self.endings)]


def load(path: str | Path = DEFAULT_DATA, limit: int | None = None) -> list[Example]:
    """The examples written by data/hellaswag/prepare.py (the first `limit` of them, if given)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found: run `{PREPARE}` (or pass the file it wrote)")
    bad = f"{path} is not a prepared HellaSwag file"
    try:
        with np.load(path) as f:
            tokens, offsets, labels = f["tokens"], f["offsets"], f["labels"]
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{bad} ({type(e).__name__}): run `{PREPARE}` again") from None
    if offsets.ndim != 2 or offsets.shape[1] != 6 or len(labels) != len(offsets) or not len(labels):
        raise UserError(f"{bad} (offsets {offsets.shape}, labels {labels.shape}): run `{PREPARE}` again")
    tokens = tokens.astype(np.int64)
    endings = [[tokens[o[k] : o[k + 1]] for k in range(1, 5)] for o in offsets]
    examples = [Example(tokens[o[0] : o[1]], e, int(label)) for o, e, label in zip(offsets, endings, labels)]
    return examples[:limit] if limit else examples


def check_vocab(vocab: Vocab, what: str, fix: str) -> None:
    if vocab != GPT2:
        raise UserError(f"HellaSwag is scored in GPT-2 tokens but {what} uses {describe(vocab)}: {fix}")


def batches(examples: list[Example], block_size: int, tokens_per_forward: int) -> list[tuple[int, int, list[int]]]:
    """(padded length, examples per batch, example indices) of each batch: an example goes to the shortest length that
    holds its longest row; a batch holds tokens_per_forward // (4 * length) examples (at least 1), the last padded."""
    doublings = (MIN_LENGTH * 2**k for k in range(block_size.bit_length()))
    sizes = [n for n in doublings if n < block_size] + [block_size]  # the padded row lengths
    by_length: dict[int, list[int]] = {}
    for i, example in enumerate(examples):
        longest = max(len(row) - 1 for row, _ in example.rows(block_size))
        by_length.setdefault(next(n for n in sizes if n >= longest), []).append(i)
    out = []
    for length in sorted(by_length):
        indices = by_length[length]
        per_batch = min(max(1, tokens_per_forward // (4 * length)), len(indices))
        out += [(length, per_batch, indices[k : k + per_batch]) for k in range(0, len(indices), per_batch)]
    return out


def batch_tensors(
    examples: list[Example], length: int, per_batch: int, indices: list[int], block_size: int, device: Device
) -> Iterator[torch.Tensor]:
    """Inputs, targets and the mask of the scored (ending) targets, each (4 * per_batch, length); empty rows pad."""
    x = np.zeros((4 * per_batch, length), dtype=np.int64)
    y = np.zeros_like(x)
    mask = np.zeros(x.shape, dtype=bool)
    for j, i in enumerate(indices):
        for k, (row, scored) in enumerate(examples[i].rows(block_size)):
            n = len(row) - 1
            x[4 * j + k, :n], y[4 * j + k, :n] = row[:-1], row[1:]
            mask[4 * j + k, n - scored : n] = True
    return (torch.from_numpy(a).to(device) for a in (x, y, mask))


def ending_losses(
    model: torch.nn.Module, x: Tensor, y: Tensor, mask: Tensor, autocast: AbstractContextManager = nullcontext()
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed and mean cross-entropy over each row's ending tokens, as (rows // 4, 4) float32 tensors."""
    with autocast:
        logits = model(x)[0]
    rows, cols = mask.nonzero(as_tuple=True)  # only the scored positions go through the float32 softmax
    losses = F.cross_entropy(logits[rows, cols, :GPT2_VOCAB_SIZE].float(), y[rows, cols], reduction="none")
    sums = torch.zeros(mask.shape, device=losses.device).index_put_((rows, cols), losses).sum(1)
    return sums.view(-1, 4), (sums / mask.sum(1).clamp(min=1)).view(-1, 4)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    examples: list[Example],
    block_size: int,
    tokens_per_forward: int,
    autocast: AbstractContextManager = nullcontext(),
    device: Device = "cpu",
    rank: int = 0,
    world_size: int = 1,
) -> dict[str, float]:
    """{"eval/hellaswag_acc", "eval/hellaswag_acc_norm"} of a GPT (compiled, DDP-unwrapped or FSDP-sharded), the same
    on every rank; all ranks must call it, each scoring every world_size-th batch (a padding pass is not counted)."""
    plan = batches(examples, block_size, tokens_per_forward)
    labels = torch.tensor([e.label for e in examples], device=device)
    correct = torch.zeros(2, device=device, dtype=torch.long)
    was_training = model.training
    model.eval()
    for b in range(rank, math.ceil(len(plan) / world_size) * world_size, world_size):
        length, per_batch, indices = plan[b % len(plan)]
        x, y, mask = batch_tensors(examples, length, per_batch, indices, block_size, device)
        sums, means = ending_losses(model, x, y, mask, autocast)
        if b < len(plan):
            target = labels[indices]
            correct[0] += (sums[: len(indices)].argmin(1) == target).sum()
            correct[1] += (means[: len(indices)].argmin(1) == target).sum()
    model.train(was_training)
    if world_size > 1:
        torch_dist.all_reduce(correct)
    acc, acc_norm = (n / len(examples) for n in correct.tolist())
    return {"eval/hellaswag_acc": acc, "eval/hellaswag_acc_norm": acc_norm}
