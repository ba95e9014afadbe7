# The tiny GPT on the embedded Shakespeare corpus (config/tiny.py) with Muon on the blocks' matrices,
# AdamW on the rest (mostly the token embedding) at train_tiny_adamw.py's tuned lr.
from config.muon import *
from config.tiny import *
from config.train_tiny_adamw import learning_rate as muon_adamw_lr

out_dir = "out/tiny_muon"
