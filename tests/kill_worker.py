"""``python tests/kill_worker.py STAGE SIGNAL nas-kd-args...``: run ``nas-kd`` and send the process ``SIGNAL`` (KILL
or TERM) at a point inside ``STAGE``: right after the first checkpoint of the training loop whose run directory
is named ``STAGE`` (teacher, supernet, finetune), or after the first candidate the search scores (search)."""
import os
import signal
import sys

from nas_kd.cli import main
from nas_kd.search.objective import Objective
from nas_kd.train.loop import TrainLoop

stage, sig, argv = sys.argv[1], getattr(signal, f"SIG{sys.argv[2]}"), sys.argv[3:]
fired = []


def fire() -> None:
    if not fired:
        fired.append(True)
        os.kill(os.getpid(), sig)


if stage == "search":
    score = Objective.__call__

    def scored(self, arch):
        before = len(self.cache)
        row = score(self, arch)
        if len(self.cache) > before:  # a new candidate, now in the journal
            fire()
        return row

    Objective.__call__ = scored
else:
    save = TrainLoop.checkpoint

    def checkpoint(self):
        save(self)
        if self.run.path.name == stage and self.state.step > 0:  # mid-epoch, inside the stage
            fire()

    TrainLoop.checkpoint = checkpoint
sys.exit(main(argv))
