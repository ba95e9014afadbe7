# GPT-2 large (770M) on OpenWebText with Lion, the paper's lr.
from config.gpt2_large import *
from config.lion import *

out_dir = "out/gpt2_large_lion"
wandb_run_name = "gpt2-large-lion"
learning_rate = 8e-5
weight_decay = 0.25
