"""Training memory per rank, estimated from the config alone (no GPU, no model built): what
scripts/tools/estimate_memory.py prints and train.py reports at start-up. The model is in docs/scaling.md (Memory).
"""

from dataclasses import dataclass

from train_config import TrainConfig

GB = 1024**3
OPTIMIZER_BYTES = {"sophiag": 8, "sophiah": 8, "adamw": 8, "lion": 4}


@dataclass
class Estimate:
    weights: float
    gradients: float
    optimizer: float
    activations: float
    other: float  # DDP's gradient buckets, or FSDP's unsharded units
    other_name: str

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.other

    def line(self) -> str:
        names = ("weights", "gradients", "optimizer", "activations")
        parts = ", ".join(f"{name} {getattr(self, name) / GB:.2f}" for name in names)
        return f"{self.total / GB:.2f} GB per rank ({parts}, {self.other_name} {self.other / GB:.2f})"


def parameter_counts(cfg: TrainConfig, vocab_size: int) -> tuple[int, int, int]:
    """(all parameters, those in the blocks' weight matrices, one block's): the tied embedding once."""
    h = cfg.n_embd
    block_matrices = 12 * h * h  # attention qkv 3h^2 + projection h^2, MLP 4h^2 + 4h^2
    per_block = block_matrices + (2 + 9 if cfg.bias else 0) * h + 2 * h  # + biases, + LayerNorm gains (and biases)
    total = vocab_size * h + cfg.block_size * h + cfg.n_layer * per_block + (2 if cfg.bias else 1) * h
    return total, cfg.n_layer * block_matrices, per_block


def estimate(cfg: TrainConfig, world_size: int, dtype: str, vocab_size: int) -> Estimate:
    """Estimate for a TrainConfig-like cfg (parallelism, optimizer_name, batch_size, block_size, model shape,
    activation_checkpointing) on world_size ranks computing in dtype ('float32', 'bfloat16', 'float16')."""
    n, matrices, per_block = parameter_counts(cfg, vocab_size)
    muon = 4 * matrices + 8 * (n - matrices)  # momentum on the blocks' matrices, AdamW's two moments on the rest
    state = muon if cfg.optimizer_name == "muon" else OPTIMIZER_BYTES[cfg.optimizer_name] * n
    low = dtype in ("bfloat16", "float16")
    s, b, h = cfg.block_size, cfg.batch_size, cfg.n_embd
    layer = (34 if low else 68) * s * b * h
    stored = layer * cfg.n_layer
    if cfg.activation_checkpointing:  # each block's input, and one block recomputed at a time
        stored = (2 if low else 4) * s * b * h * cfg.n_layer + layer
    activations = stored + (10 if low else 12) * s * b * vocab_size
    if cfg.parallelism == "fsdp":
        unsharded = (2 if low else 4) * ((vocab_size + s) * h + 2 * per_block) + 4 * per_block
        sharded = 4 * n / world_size
        return Estimate(sharded, sharded, state / world_size, activations, unsharded, "unsharded units")
    return Estimate(4 * n, 4 * n, state, activations, 4 * n if world_size > 1 else 0, "DDP buckets")
