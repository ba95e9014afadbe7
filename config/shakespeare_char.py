# A "baby GPT" on the character-level Shakespeare corpus (python data/shakespeare_char/prepare.py, then
# python train.py config/train_shakespeare_char_<optimizer>.py): the regime where an optimizer comparison
# means something on a CPU. config/tiny.py's model and batch on an 80-character vocabulary: 0.80M
# parameters, 99% of them in the transformer blocks; 1000 steps. The four optimizers' configs share
# model, batch, data and seed.
from config.tiny import *

dataset = "shakespeare_char"
max_iters = 1000
warmup_iters = 100
eval_interval = 50
eval_iters = 8
