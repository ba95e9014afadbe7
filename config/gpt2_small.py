# GPT-2 small (125M). 480 sequences per step = 8 GPUs x 5 micro-steps x 12 (one GPU: 40 micro-steps).
from config.gpt2 import *

n_layer = 12
n_head = 12
n_embd = 768
batch_size = 12
