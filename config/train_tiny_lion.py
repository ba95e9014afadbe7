# A tiny GPT on the embedded Shakespeare corpus with Lion: the model, data and steps of
# train_tiny_adamw.py (python data/shakespeare/prepare.py first), for the four-optimizer sweep.
# python train.py config/train_tiny_lion.py

out_dir = 'out/tiny_lion'
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

optimizer_name = 'lion'
learning_rate = 1e-3  # Lion's authors: 3-10x below AdamW's (3e-3 here)
# Lion's authors' betas for language models; weight decay keeps the tuned AdamW's lr * weight_decay
# (3e-3 x 0.1) at this lr, as the Lion paper advises.
beta1 = 0.95
beta2 = 0.98
weight_decay = 0.3

eval_interval = 25
eval_iters = 5
log_interval = 10
