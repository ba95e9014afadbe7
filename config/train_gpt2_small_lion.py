# GPT-2 small (125M) on OpenWebText with Lion, the paper's lr.
from config.gpt2_small import *
from config.lion import *

out_dir = "out/gpt2_small_lion"
wandb_run_name = "gpt2-small-lion"
learning_rate = 1e-4
weight_decay = 0.6
