# The baby GPT on character-level Shakespeare (config/shakespeare_char.py) with Lion.
from config.lion import *
from config.shakespeare_char import *

out_dir = "out/shakespeare_char_lion"
learning_rate = 1e-3  # tuned: the best of 1e-4, 3e-4, 1e-3, 3e-3 (docs/results.md)
weight_decay = 0.3
