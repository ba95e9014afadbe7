# The setting of Liu et al. 2023 (arXiv 2305.14342) for every GPT-2 size: OpenWebText, batch 480 x
# 1024 tokens, 100k iterations, 2k warmup, cosine decay to 0.05x the peak lr (min_lr's default),
# gradient clipping at 1.0. A config composes it with a size (config/gpt2_<size>.py) and an optimizer
# (config/<optimizer>.py); every source of a value is in docs/scaling.md. Launch one with
# torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_<size>_<optimizer>.py
wandb_log = True
dataset = "openwebtext"
dropout = 0.0
bias = False
total_batch_size = 480
block_size = 1024
max_iters = 100000
warmup_iters = 2000
grad_clip = 1.0
eval_interval = 1000
eval_iters = 200
log_interval = 10
