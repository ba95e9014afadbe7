# A tiny GPT on the embedded Shakespeare corpus with Muon: the model, data and steps of
# train_tiny_adamw.py (python data/shakespeare/prepare.py first). Muon trains the 2-D weight
# matrices of the transformer blocks (0.8M of the 7.2M parameters); AdamW trains the rest, 6.4M
# of it the 50304 x 128 token embedding = the tied LM head, exactly as train_tiny_adamw.py does.
# python train.py config/train_tiny_muon.py

out_dir = 'out/tiny_muon'
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

optimizer_name = 'muon'
# Muon: KellerJordan/Muon's recipe (lr 0.02, weight decay 0.01, Nesterov momentum 0.95, 5
# Newton-Schulz steps, its lr * sqrt(max(1, rows / cols)) per matrix).
learning_rate = 0.02
weight_decay = 0.01
muon_momentum = 0.95
muon_adjust_lr_fn = 'original'
# The AdamW part: train_tiny_adamw.py's tuned lr, betas and weight decay, as in that recipe, where
# Muon replaces AdamW on the hidden matrices and AdamW keeps its settings for everything else.
muon_adamw_lr = 3e-3
beta1 = 0.9
beta2 = 0.95
muon_adamw_weight_decay = 0.1

eval_interval = 25
eval_iters = 5
log_interval = 10
