# GPT-2 XL-size (1.5B) on OpenWebText with Lion.
from config.gpt2_xl import *
from config.lion import *

out_dir = "out/gpt2_xl_lion"
wandb_run_name = "gpt2-xl-lion"
# No source gives Lion's lr at 1.5B. The paper's Lion/AdamW lr ratio falls with size (1/6 at 125M, 1/3
# at 355M, 1/2.5 at 770M); we extrapolate 1/2.5 of AdamW's 1.2e-4 = 5e-5, an unverified choice: sweep it.
learning_rate = 5e-5
weight_decay = 0.24
