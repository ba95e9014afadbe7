"""GPT-2 in one file, the model that train.py pretrains and sample.py samples from: token + learned position
embeddings, pre-LayerNorm blocks with causal self-attention (torch's scaled_dot_product_attention, flash kernels
on CUDA) and a GELU MLP, a final LayerNorm and an LM head tied to the token embedding. It imports nothing of the
repo (no optimizer: train.py owns optimisation), so any training loop can use it.
"""

import math
from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

# GPT-2's 50,257-token vocabulary rounded up to a multiple of 64: the padded rows are never targets,
# and the matrix shapes become friendlier to GPU kernels (docs/performance.md).
PADDED_VOCAB_SIZE = 50304


@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = PADDED_VOCAB_SIZE
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = False  # bias in Linear and LayerNorm layers; GPT-2 had them, without is a bit better and faster
    scale_attn_by_inverse_layer_idx: bool = False  # the official repo's large (770M) config uses it

    def __post_init__(self) -> None:
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.scale = 1.0 / math.sqrt(config.n_embd // config.n_head)
        # Stanford CRFM (Mistral GPT-2 runs): scaling layer i's attention logits by 1/(i+1) stabilises
        # large models. Applied to q as a tensor (not folded into the float `scale`): blocks compiled one
        # by one (FSDP) then share one graph, where a float per block would compile one graph each.
        self.scale_by_layer = config.scale_attn_by_inverse_layer_idx
        self.register_buffer("inv_layer", torch.tensor(1.0 / (layer_idx + 1)), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.size()
        # q, k, v: (B, T, C) -> (B, nh, T, hs)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in self.c_attn(x).split(C, dim=2))
        if self.scale_by_layer:
            q = q * self.inv_layer
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale, dropout_p=dropout)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        # GPT-2 used the tanh approximation of GELU; keeping it makes OpenAI's weights exact.
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """GPT's body, `transformer.*` in the state dict (GPT-2's names): embeddings, blocks, final norm."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList([Block(config, i) for i in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = Transformer(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        # Recompute block activations in the backward pass (training only), compute for memory; a run-time switch.
        self.activation_checkpointing = False
        self.apply(self._init_weights)
        # GPT-2 paper: scale the residual projections by 1/sqrt(2 * n_layer) (two per block).
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count, the tied token embedding (also the LM head) once. non_embedding: without the
        token and position embeddings, Kaplan et al.'s N, which tokens per parameter divide by."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wte.weight.numel() + self.transformer.wpe.weight.numel()
        return n

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """idx (B, T) token ids -> (logits (B, T, vocab_size), the mean cross-entropy over all B*T positions
        against targets (B, T), or None without them)."""
        B, T = idx.size()
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} is longer than block_size {self.config.block_size}")
        pos = torch.arange(T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        recompute = self.activation_checkpointing and self.training
        for block in self.transformer.h:
            x = checkpoint(block, x, use_reentrant=False) if recompute else block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    def flops_per_token(self) -> int:
        """Training FLOPs (forward + backward) per token: 6 per weight that a token multiplies (the non-embedding
        ones and the LM head) plus the attention scores and values, 12 * n_layer * n_embd * T (PaLM, appendix B)."""
        cfg = self.config
        matmul = self.num_params(non_embedding=True) + self.lm_head.weight.numel()
        return 6 * matmul + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size

    def crop_block_size(self, block_size: int) -> None:
        """Model surgery to use a smaller context than the weights were made for (e.g. GPT-2's 1024)."""
        if not 0 < block_size <= self.config.block_size:
            raise ValueError(f"can only crop block_size to 1..{self.config.block_size}, got {block_size}")
        self.config.block_size = block_size
        self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size])

    @torch.no_grad()
    def generate(
        self,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        vocab_size: int | None = None,
    ) -> Tensor:
        """Extend idx (B, T) by max_new_tokens sampled tokens. temperature -> 0 is greedy. vocab_size:
        the tokenizer's, to sample among real tokens only (a padded vocabulary's extra rows are not)."""
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.config.block_size :])
            logits = logits[:, -1, :vocab_size].float()
            if temperature == 0:
                idx_next = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                    logits[logits < v[:, [-1]]] = -float("inf")
                probs = F.softmax(logits, dim=-1)
                idx_next = torch.multinomial(probs, num_samples=1, generator=generator)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx


def config_from_dict(d: dict) -> GPTConfig:
    """GPTConfig from a dict that may carry other keys (a train config or a checkpoint's)."""
    names = {f.name for f in fields(GPTConfig)}
    return GPTConfig(**{k: v for k, v in d.items() if k in names})
