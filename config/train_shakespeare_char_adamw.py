# The baby GPT on character-level Shakespeare (config/shakespeare_char.py) with AdamW.
from config.adamw import *
from config.shakespeare_char import *

out_dir = "out/shakespeare_char_adamw"
learning_rate = 1e-2  # tuned: the best of 1e-3, 3e-3, 1e-2, 3e-2 (docs/results.md)
