# GPT-2 XL-size (1.5B) on OpenWebText with AdamW.
from config.adamw import *
from config.gpt2_xl import *

out_dir = "out/gpt2_xl_adamw"
wandb_run_name = "gpt2-xl-adamw"
# levanter's gpt2_1536 config (the official repo's AdamW baseline)
learning_rate = 1.2e-4
