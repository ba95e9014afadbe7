# GPT-2 medium (355M) on OpenWebText with Sophia-G, the paper's lr and rho.
# torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_medium_sophiag.py
from config.gpt2_medium import *
from config.sophiag import *

out_dir = "out/gpt2_medium_sophiag"
wandb_run_name = "gpt2-medium-sophiag"
learning_rate = 7e-4
rho = 0.08
