# Muon on the 2-D weight matrices of the transformer blocks, KellerJordan/Muon's recipe (its per-matrix lr
# scaling needs no retuning as the model grows, its author says); AdamW trains the rest (embeddings = the
# tied LM head, norm gains) with config/adamw.py's betas and weight decay, as in that recipe, at each
# config's muon_adamw_lr. Under FSDP each matrix is gathered once per step (optimizers.GatheredMuon).
from config.adamw import beta1, beta2, weight_decay as muon_adamw_weight_decay

optimizer_name = "muon"
learning_rate = 0.02
weight_decay = 0.01
muon_momentum = 0.95
muon_adjust_lr_fn = "original"
