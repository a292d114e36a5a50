import json
import socket
import subprocess
import sys

import torch


def free_port() -> int:
    """A TCP port the OS says is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_stay_in_sync(tmp_path, fmnist_root):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           "tests/ddp_worker.py", str(tmp_path), fmnist_root]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert r0["weights"] == r1["weights"]  # each rank saw a different half of every batch
    final = json.loads((tmp_path / "ddp/final.json").read_text())
    assert final["world_size"] == 2
    ckpt = torch.load(tmp_path / "ddp/checkpoints/last.pt", weights_only=True)
    assert ckpt["loop"]["epoch"] == 1
