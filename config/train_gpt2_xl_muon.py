# GPT-2 XL-size (1.5B) on OpenWebText with Muon, not tuned at this size; its AdamW part at AdamW's lr.
from config.gpt2_xl import *
from config.muon import *
from config.train_gpt2_xl_adamw import learning_rate as muon_adamw_lr

out_dir = "out/gpt2_xl_muon"
wandb_run_name = "gpt2-xl-muon"
