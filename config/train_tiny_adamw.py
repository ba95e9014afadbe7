# The tiny GPT on the embedded Shakespeare corpus (config/tiny.py) with AdamW.
from config.adamw import *
from config.tiny import *

out_dir = "out/tiny_adamw"
learning_rate = 3e-3  # best over 2 seeds in docs/sweep_and_compare.md; the README four-way: 1e-2
