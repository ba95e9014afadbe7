# GPT-2 large (770M). 480 sequences per step = 8 GPUs x 15 micro-steps x 4 (one GPU: 120 micro-steps).
from config.gpt2 import *

n_layer = 36
n_head = 20
n_embd = 1280
scale_attn_by_inverse_layer_idx = True  # as in the official large config
batch_size = 4
