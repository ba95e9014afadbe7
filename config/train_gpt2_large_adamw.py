# GPT-2 large (770M) on OpenWebText with AdamW, the paper's lr.
from config.adamw import *
from config.gpt2_large import *

out_dir = "out/gpt2_large_adamw"
wandb_run_name = "gpt2-large-adamw"
learning_rate = 2e-4
