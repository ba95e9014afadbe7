# GPT-2 XL-size (1.5B) on OpenWebText with Muon: the paper's largest GPT-2 (its abstract: 125M to
# 1.5B). The official repo trains it with levanter's gpt2_1536 model, mirrored here: 48 layers, 1536
# wide, 24 heads, context 1024, batch 512 sequences, 200k steps (github.com/Liuhong99/Sophia README,
# levanter config gpt2_1536). Sharded with FSDP: under DDP its 16 bytes/parameter of weights,
# gradients and optimizer state (~25 GB) plus DDP's buckets leave no room for activations on 40 GB GPUs.
# torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_xl_muon.py

out_dir = 'out/gpt2_xl_muon'
wandb_log = True
wandb_run_name = 'gpt2-xl-muon'
dataset = 'openwebtext'

n_layer = 48
n_head = 24
n_embd = 1536
dropout = 0.0
bias = False
scale_attn_by_inverse_layer_idx = True  # as in the official large config (stabilises deep GPT-2s)

parallelism = 'fsdp'
# 512 sequences per step = 8 GPUs x 8 micro-steps x 8. Estimated 25.4 GB per GPU with Muon
# (python scripts/estimate_memory.py config/train_gpt2_xl_muon.py): fits 40 GB GPUs; on 80 GB ones
# --batch_size=16 halves the micro-steps (README: memory table)
batch_size = 8
total_batch_size = 512
block_size = 1024

max_iters = 200000
warmup_iters = 2000  # the other sizes' 2k (the official 1.5B command does not state it)
grad_clip = 1.0

optimizer_name = 'muon'
# Muon on the 2-D weight matrices of the transformer blocks: KellerJordan/Muon's recipe (lr 0.02,
# weight decay 0.01, Nesterov momentum 0.95, 5 Newton-Schulz steps, its per-matrix lr scaling, which
# its author says needs no retuning as the model grows). Not tuned at this size. Under FSDP each
# matrix is gathered once per step and orthogonalised whole (optimizers.GatheredMuon).
learning_rate = 0.02
weight_decay = 0.01
muon_momentum = 0.95
muon_adjust_lr_fn = 'original'
# The AdamW part (token and position embeddings = the tied LM head, norm gains): the settings of
# train_gpt2_xl_adamw.py (levanter's lr 1.2e-4), as in that recipe.
muon_adamw_lr = 0.00012
beta1 = 0.9
beta2 = 0.95
muon_adamw_weight_decay = 0.1

eval_interval = 1000
eval_iters = 200
log_interval = 10
