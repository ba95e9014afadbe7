# The baby GPT on character-level Shakespeare (config/shakespeare_char.py) with Sophia-G.
from config.shakespeare_char import *
from config.sophiag import *

out_dir = "out/shakespeare_char_sophiag"
learning_rate = 1e-3  # tuned: the best of 3e-4, 1e-3, 3e-3 at rho 0.1 (docs/results.md)
rho = 0.1  # tuned so that train/win_rate stays inside the official 0.1-0.5 band (docs/results.md)
# The Hessian EMA starts at 0 and after r refreshes holds 1 - beta2^r of its stationary weight. The
# paper's k = 10, beta2 = 0.99 needs 230 refreshes (2,300 steps) to reach 90%, longer than this run.
# k = 5 and beta2 = 0.95 reach 90% after 45 refreshes (225 steps) and 96% by a third of the run,
# averaging the estimate over the last ~20 refreshes (~100 steps), as the paper's over ~1,000.
hess_interval = 5
beta2 = 0.95
hess_total_batch_size = 32
