# GPT-2 large (770M) on OpenWebText with Muon, not tuned at this size; its AdamW part at AdamW's lr.
from config.gpt2_large import *
from config.muon import *
from config.train_gpt2_large_adamw import learning_rate as muon_adamw_lr

out_dir = "out/gpt2_large_muon"
wandb_run_name = "gpt2-large-muon"
