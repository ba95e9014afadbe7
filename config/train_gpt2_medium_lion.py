# GPT-2 medium (355M) on OpenWebText with Lion, the paper's lr.
from config.gpt2_medium import *
from config.lion import *

out_dir = "out/gpt2_medium_lion"
wandb_run_name = "gpt2-medium-lion"
learning_rate = 1e-4
weight_decay = 0.3
