"""Run under torchrun (2 CPU ranks): one Muon step on FSDP-sharded matrices, by GatheredMuon and by
torch.optim.Muon as it is, against torch.optim.Muon on the unsharded model; prints JSON (rank 0)."""

import copy
import json

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor.debug import CommDebugMode

from model import GPT, GPTConfig
from optimizers import GatheredMuon, hidden_matrices

dist.init_process_group("gloo")
torch.manual_seed(0)
plain = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=256))
gathered, as_is = copy.deepcopy(plain), copy.deepcopy(plain)
mesh = init_device_mesh("cpu", (dist.get_world_size(),))
for model in (gathered, as_is):
    for block in model.transformer.h:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
x = torch.randint(0, 256, (2, 4, 32), generator=torch.Generator().manual_seed(1))
for model in (gathered, as_is):
    model(x[dist.get_rank()], x[dist.get_rank()])[1].backward()
plain(x.flatten(0, 1), x.flatten(0, 1))[1].backward()  # the same global batch: the same mean gradient
result = {"matrices": len(hidden_matrices(plain))}
torch.optim.Muon(hidden_matrices(plain), lr=0.02).step()
for name, model, cls in (("gathered", gathered, GatheredMuon), ("as_is", as_is, torch.optim.Muon)):
    mode = CommDebugMode()
    with mode:
        cls(hidden_matrices(model), lr=0.02).step()
    diff = max((s.full_tensor() - p).abs().max().item() for s, p in zip(hidden_matrices(model), hidden_matrices(plain)))
    result[name] = {"collectives": mode.get_total_counts(), "max_abs_diff": diff}
if dist.get_rank() == 0:
    print(json.dumps(result))
dist.destroy_process_group()
