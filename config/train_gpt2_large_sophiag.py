# GPT-2 large (770M) on OpenWebText with Sophia-G, the paper's lr and rho.
from config.gpt2_large import *
from config.sophiag import *

out_dir = "out/gpt2_large_sophiag"
wandb_run_name = "gpt2-large-sophiag"
learning_rate = 3e-4
rho = 0.05
