# GPT-2 XL-size (1.5B) on OpenWebText with Sophia-G.
from config.gpt2_xl import *
from config.sophiag import *

out_dir = "out/gpt2_xl_sophiag"
wandb_run_name = "gpt2-xl-sophiag"
# The official README's Sophia-G command for this model: lr 2.5e-4, weight decay 0.15, min lr ratio
# 0.02. rho 0.04 from the official repo's issue #15 (its answer for 1.5B; it also suggests lr 2e-4:
# we keep the README's command, the one that was run).
learning_rate = 2.5e-4
min_lr = 5e-6  # 0.02 x learning_rate
weight_decay = 0.15
rho = 0.04
