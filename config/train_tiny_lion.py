# The tiny GPT on the embedded Shakespeare corpus (config/tiny.py) with Lion.
from config.lion import *
from config.tiny import *

out_dir = "out/tiny_lion"
learning_rate = 1e-3  # Lion's authors: 3-10x below AdamW's (3e-3 here)
weight_decay = 0.3  # the tuned AdamW's lr * weight_decay (3e-3 x 0.1) at this lr
