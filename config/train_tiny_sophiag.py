# The tiny GPT on the embedded Shakespeare corpus (config/tiny.py) with Sophia-G.
from config.sophiag import *
from config.tiny import *

out_dir = "out/tiny_sophiag"
learning_rate = 1e-3  # best over 2 seeds in docs/sweep_and_compare.md; the README four-way: 3e-3
rho = 0.05
# the Hessian on 8 fresh sequences, a quarter of the training batch (the paper: all of it): Sophia-G's
# step then costs about AdamW's, at the same final val loss within seed noise (docs/performance.md)
hess_total_batch_size = 8
