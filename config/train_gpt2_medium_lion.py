# GPT-2 medium (355M) on OpenWebText with Lion: the setting of
# Liu et al. 2023 (arXiv 2305.14342): batch 480 x 1024 tokens, 100k iterations, 2k warmup,
# cosine decay to 0.05x the peak lr, gradient clipping at 1.0.
# torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_medium_lion.py

out_dir = 'out/gpt2_medium_lion'
wandb_log = True
wandb_run_name = 'gpt2-medium-lion'
dataset = 'openwebtext'

n_layer = 24
n_head = 16
n_embd = 1024
dropout = 0.0
bias = False

# 480 sequences per step = 8 GPUs x 10 micro-steps x 6 (one GPU: 80 micro-steps)
batch_size = 6
total_batch_size = 480
block_size = 1024

max_iters = 100000
warmup_iters = 2000
grad_clip = 1.0

optimizer_name = 'lion'
learning_rate = 0.0001
# Lion's authors' betas for language models. The paper gives only the lr; weight decay keeps
# AdamW's effective decay lr * weight_decay, as the Lion paper advises.
beta1 = 0.95
beta2 = 0.98
weight_decay = 0.3

eval_interval = 1000
eval_iters = 200
log_interval = 10
