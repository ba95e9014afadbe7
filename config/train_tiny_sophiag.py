# A tiny GPT on the embedded Shakespeare corpus with Sophia-G: a real comparison that runs on a CPU in
# minutes (python data/shakespeare/prepare.py first; times in docs/performance.md). 7.2M parameters,
# 6.4M of them the 50304 x 128 token embedding; 200 steps of 32 x 64 tokens.
# python train.py config/train_tiny_sophiag.py

out_dir = 'out/tiny_sophiag'
dataset = 'shakespeare'

n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
bias = False

batch_size = 32
total_batch_size = 32
block_size = 64

max_iters = 200
warmup_iters = 20
grad_clip = 1.0

optimizer_name = 'sophiag'
learning_rate = 1e-3  # best over 2 seeds in docs/sweep_and_compare.md; the README four-way: 3e-3
beta1 = 0.965
beta2 = 0.99
weight_decay = 0.2
rho = 0.05
hess_interval = 10  # Hessian refresh every 10 steps
# ... on 8 fresh sequences, a quarter of the training batch (the paper: all 32): Sophia-G's step costs
# about AdamW's, at the same final val loss within seed noise (docs/performance.md has the numbers)
hess_total_batch_size = 8

eval_interval = 25
eval_iters = 5
log_interval = 10
