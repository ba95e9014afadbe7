# A "baby GPT" on the character-level Shakespeare corpus (python data/shakespeare_char/prepare.py first):
# the regime where an optimizer comparison means something on a CPU. 4 layers x 128 wide on an
# 80-character vocabulary: 0.80M parameters, 99% of them in the transformer blocks. 1000 steps of
# 32 x 64 characters; the four optimizers' configs share model, batch, data and seed.
dataset = "shakespeare_char"
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
bias = False
batch_size = 32
total_batch_size = 32
block_size = 64
max_iters = 1000
warmup_iters = 100
grad_clip = 1.0
eval_interval = 50
eval_iters = 8
log_interval = 10
