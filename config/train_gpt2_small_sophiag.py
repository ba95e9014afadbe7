# GPT-2 small (125M) on OpenWebText with Sophia-G, the paper's lr and rho.
from config.gpt2_small import *
from config.sophiag import *

out_dir = "out/gpt2_small_sophiag"
wandb_run_name = "gpt2-small-sophiag"
learning_rate = 6e-4
rho = 0.05
