# GPT-2 small (125M) on OpenWebText with AdamW, the paper's lr.
from config.adamw import *
from config.gpt2_small import *

out_dir = "out/gpt2_small_adamw"
wandb_run_name = "gpt2-small-adamw"
learning_rate = 6e-4
