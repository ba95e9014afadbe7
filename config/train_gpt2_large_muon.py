# GPT-2 large (770M) on OpenWebText with Muon (AdamW for embeddings, gains, biases): the setting of
# Liu et al. 2023 (arXiv 2305.14342): batch 480 x 1024 tokens, 100k iterations, 2k warmup,
# cosine decay to 0.05x the peak lr, gradient clipping at 1.0.
# torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_large_muon.py

out_dir = 'out/gpt2_large_muon'
wandb_log = True
wandb_run_name = 'gpt2-large-muon'
dataset = 'openwebtext'

n_layer = 36
n_head = 20
n_embd = 1280
dropout = 0.0
bias = False
scale_attn_by_inverse_layer_idx = True  # as in the official large config

# 480 sequences per step = 8 GPUs x 15 micro-steps x 4 (one GPU: 120 micro-steps)
batch_size = 4
total_batch_size = 480
block_size = 1024

max_iters = 100000
warmup_iters = 2000
grad_clip = 1.0

optimizer_name = 'muon'
# Muon on the 2-D weight matrices of the transformer blocks: KellerJordan/Muon's recipe (lr 0.02,
# weight decay 0.01, Nesterov momentum 0.95, 5 Newton-Schulz steps, its per-matrix lr scaling, which
# its author says needs no retuning as the model grows). Not tuned at this size.
learning_rate = 0.02
weight_decay = 0.01
muon_momentum = 0.95
muon_adjust_lr_fn = 'original'
# The AdamW part (token and position embeddings = the tied LM head, norm gains): the settings of
# train_gpt2_large_adamw.py, as in that recipe, where AdamW keeps its settings for everything but
# the hidden matrices.
muon_adamw_lr = 0.0002
beta1 = 0.9
beta2 = 0.95
muon_adamw_weight_decay = 0.1

eval_interval = 1000
eval_iters = 200
log_interval = 10
