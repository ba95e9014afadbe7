# Lion with its authors' betas for language models. The Sophia paper gives only Lion's lr; each config's
# weight decay keeps AdamW's effective decay, lr * weight_decay, at Lion's lr, as the Lion paper advises.
optimizer_name = "lion"
beta1 = 0.95
beta2 = 0.98
