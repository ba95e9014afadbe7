# GPT-2 medium (355M) on OpenWebText with Muon, not tuned at this size; its AdamW part at AdamW's lr.
from config.gpt2_medium import *
from config.muon import *
from config.train_gpt2_medium_adamw import learning_rate as muon_adamw_lr

out_dir = "out/gpt2_medium_muon"
wandb_run_name = "gpt2-medium-muon"
