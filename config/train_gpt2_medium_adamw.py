# GPT-2 medium (355M) on OpenWebText with AdamW, the paper's lr.
from config.adamw import *
from config.gpt2_medium import *

out_dir = "out/gpt2_medium_adamw"
wandb_run_name = "gpt2-medium-adamw"
learning_rate = 3e-4
