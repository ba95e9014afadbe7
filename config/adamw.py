# AdamW with the paper's betas and weight decay, at every size.
optimizer_name = "adamw"
beta1 = 0.9
beta2 = 0.95
weight_decay = 0.1
