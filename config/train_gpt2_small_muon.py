# GPT-2 small (125M) on OpenWebText with Muon, not tuned at this size; its AdamW part at AdamW's lr.
from config.gpt2_small import *
from config.muon import *
from config.train_gpt2_small_adamw import learning_rate as muon_adamw_lr

out_dir = "out/gpt2_small_muon"
wandb_run_name = "gpt2-small-muon"
