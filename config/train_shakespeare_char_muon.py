# The baby GPT on character-level Shakespeare (config/shakespeare_char.py) with Muon.
from config.muon import *
from config.shakespeare_char import *

out_dir = "out/shakespeare_char_muon"
learning_rate = 0.02  # tuned: the best of 6e-3, 2e-2, 6e-2 (docs/results.md)
muon_adamw_lr = 3e-3
