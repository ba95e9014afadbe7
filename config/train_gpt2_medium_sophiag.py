# GPT-2 medium (355M) on OpenWebText with Sophia-G, the paper's lr and rho.
from config.gpt2_medium import *
from config.sophiag import *

out_dir = "out/gpt2_medium_sophiag"
wandb_run_name = "gpt2-medium-sophiag"
learning_rate = 7e-4
rho = 0.08
