"""Run under torchrun by tests/test_distributed.py: train a tiny supernet on 2 gloo ranks, then
write each rank's weight checksum and the rank's data-shard checksum to OUT/rank<R>.json."""
import json
import sys

import torch.distributed as dist

from nas_kd.config import load_recipe
from nas_kd.recipes import train_supernet

out, root = sys.argv[1], sys.argv[2]
recipe = load_recipe("recipes/supernet_fmnist.yaml", [
    f"data.root={root}", f"run.out_dir={out}", "run.name=ddp", "data.limit_train=512", "data.limit_test=200",
    "data.val_size=200", "data.batch_size=64", "train.epochs=1", "train.device=cpu", "train.threads=1",
    "supernet.bn_batches=2", "supernet.eval_random_archs=0", "supernet.keep_epoch_checkpoints=false",
])
seen = {}


def record(loop):
    seen["weights"] = [p.detach().double().sum().item() for p in loop.model.parameters()]


train_supernet(recipe, on_step=record, show_progress=False)
rank = dist.get_rank()
with open(f"{out}/rank{rank}.json", "w") as f:
    json.dump({"world": dist.get_world_size(), "weights": seen["weights"]}, f)
