# A tiny GPT on the embedded Shakespeare corpus (python data/shakespeare/prepare.py, then python train.py
# config/train_tiny_<optimizer>.py): a real comparison that runs on a CPU in minutes (times in
# docs/performance.md). 7.2M parameters, 6.4M of them the 50304 x 128 token embedding (the tied LM
# head); 200 steps of 32 x 64 tokens.
dataset = "shakespeare"
n_layer = 4
n_head = 4
n_embd = 128
batch_size = 32
total_batch_size = 32
block_size = 64
max_iters = 200
warmup_iters = 20
eval_interval = 25
eval_iters = 5
