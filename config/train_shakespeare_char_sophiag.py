# A "baby GPT" on the character-level Shakespeare corpus (python data/shakespeare_char/prepare.py first):
# the regime where an optimizer comparison means something on a CPU. 4 layers x 128 wide on an
# 80-character vocabulary: 0.80M parameters, 99% of them in the transformer blocks. 1000 steps of
# 32 x 64 characters; the four configs (adamw, sophiag, lion, muon) share model, batch, data and seed.
# python train.py config/train_shakespeare_char_sophiag.py

out_dir = 'out/shakespeare_char_sophiag'
dataset = 'shakespeare_char'

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

optimizer_name = 'sophiag'
learning_rate = 1e-3  # tuned: the best of 3e-4, 1e-3, 3e-3 at rho 0.1 (docs/results.md)
beta1 = 0.965
weight_decay = 0.2
rho = 0.1  # tuned so that train/win_rate stays inside the official 0.1-0.5 band (docs/results.md)
# The Hessian EMA starts at 0 and after r refreshes holds 1 - beta2^r of its stationary weight. The
# paper's k = 10, beta2 = 0.99 needs 230 refreshes (2,300 steps) to reach 90%, longer than this run.
# k = 5 and beta2 = 0.95 reach 90% after 45 refreshes (225 steps) and 96% by a third of the run,
# averaging the estimate over the last ~20 refreshes (~100 steps), as the paper's over ~1,000.
hess_interval = 5
beta2 = 0.95
hess_total_batch_size = 32

eval_interval = 50
eval_iters = 8
log_interval = 10
