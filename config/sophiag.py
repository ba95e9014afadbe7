# Sophia-G with the paper's betas and weight decay, the Hessian estimate refreshed every k = 10 steps
# on a fresh batch (hess_total_batch_size: the training batch's size unless set).
optimizer_name = "sophiag"
beta1 = 0.965
beta2 = 0.99
weight_decay = 0.2
hess_interval = 10
