# GPT-2 small (125M) on OpenWebText with Sophia-G: the setting of
# Liu et al. 2023 (arXiv 2305.14342): batch 480 x 1024 tokens, 100k iterations, 2k warmup,
# cosine decay to 0.05x the peak lr, gradient clipping at 1.0.
# torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_small_sophiag.py

out_dir = 'out/gpt2_small_sophiag'
wandb_log = True
wandb_run_name = 'gpt2-small-sophiag'
dataset = 'openwebtext'

n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.0
bias = False

# 480 sequences per step = 8 GPUs x 5 micro-steps x 12 (one GPU: 40 micro-steps)
batch_size = 12
total_batch_size = 480
block_size = 1024

max_iters = 100000
warmup_iters = 2000
grad_clip = 1.0

optimizer_name = 'sophiag'
learning_rate = 0.0006
beta1 = 0.965
beta2 = 0.99
weight_decay = 0.2
rho = 0.05
hess_interval = 10  # Hessian refresh every 10 steps, on a fresh 480 x 1024 batch

eval_interval = 1000
eval_iters = 200
log_interval = 10
