# GPT-2 small (125M) on OpenWebText with Sophia-G, the paper's lr and rho.
# torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_small_sophiag.py
from config.gpt2_small import *
from config.sophiag import *

out_dir = "out/gpt2_small_sophiag"
wandb_run_name = "gpt2-small-sophiag"
learning_rate = 6e-4
rho = 0.05
