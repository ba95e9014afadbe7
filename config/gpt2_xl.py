# GPT-2 XL-size (1.5B), the paper's largest GPT-2: the official repo's levanter gpt2_1536 model and batch
# (github.com/Liuhong99/Sophia README); warmup is the other sizes' (the official command does not state it).
# Sharded with FSDP: under DDP every GPU would hold all the weights, gradients and optimizer state
# (scripts/tools/estimate_memory.py CONFIG gives the memory per GPU; docs/scaling.md the table).
from config.gpt2 import *

n_layer = 48
n_head = 24
n_embd = 1536
scale_attn_by_inverse_layer_idx = True  # as in the official large config (stabilises deep GPT-2s)
parallelism = "fsdp"
batch_size = 8  # 512 sequences per step = 8 GPUs x 8 micro-steps x 8
total_batch_size = 512
max_iters = 200000
