# GPT-2 XL-size (1.5B), the paper's largest GPT-2 (its abstract: 125M to 1.5B). The official repo trains
# it with levanter's gpt2_1536 model, mirrored here: 48 layers, 1536 wide, 24 heads, context 1024, batch
# 512 sequences, 200k steps (github.com/Liuhong99/Sophia README, levanter config gpt2_1536); warmup is
# the other sizes' 2k (the official 1.5B command does not state it). Sharded with FSDP: under DDP every
# GPU would hold all the weights, gradients and optimizer state (python scripts/tools/estimate_memory.py
# CONFIG gives the memory per GPU; docs/scaling.md the table).
from config.gpt2 import *

n_layer = 48
n_head = 24
n_embd = 1536
scale_attn_by_inverse_layer_idx = True  # as in the official large config (stabilises deep GPT-2s)
parallelism = "fsdp"
batch_size = 8  # 512 sequences per step = 8 GPUs x 8 micro-steps x 8
total_batch_size = 512
max_iters = 200000
