# GPT-2 medium (355M). 480 sequences per step = 8 GPUs x 10 micro-steps x 6 (one GPU: 80 micro-steps).
from config.gpt2 import *

n_layer = 24
n_head = 16
n_embd = 1024
batch_size = 6
