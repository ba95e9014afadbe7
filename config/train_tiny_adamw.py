# A tiny GPT on the embedded Shakespeare corpus with AdamW: a real comparison that runs on a CPU in
# minutes (python data/shakespeare/prepare.py first; times in docs/performance.md). 7.2M parameters,
# 6.4M of them the 50304 x 128 token embedding; 200 steps of 32 x 64 tokens.
# python train.py config/train_tiny_adamw.py

out_dir = 'out/tiny_adamw'
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

optimizer_name = 'adamw'
learning_rate = 3e-3  # best over 2 seeds in docs/sweep_and_compare.md; the README four-way: 1e-2
beta1 = 0.9
beta2 = 0.95
weight_decay = 0.1

eval_interval = 25
eval_iters = 5
log_interval = 10
