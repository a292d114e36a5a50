"""``python tests/kill_worker.py STAGE SIGNAL nas-kd-args...``: run ``nas-kd`` and send the process ``SIGNAL`` (KILL
or TERM) at a point inside ``STAGE``: right after the first checkpoint of the training loop whose run directory
is named ``STAGE`` (teacher, supernet, finetune), after the first candidate the search scores (search), right after
the fine-tune's ``final.json`` (finetune-done), or between the student's weights and its ``arch.json``
(student-files)."""
import os
import signal
import sys
from pathlib import Path

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
elif stage == "finetune-done":
    finish = TrainLoop.finish

    def finished(self, final, started):
        out = finish(self, final, started)
        if self.run.path.name == "finetune":
            fire()
        return out

    TrainLoop.finish = finished
elif stage == "student-files":
    import nas_kd.export as export

    write = export.write_json_atomic

    def write_arch(path, payload):
        if Path(path).parent.name == "student" and Path(path).parent.parent.name != "finetune":
            fire()  # the student's weights are written, its arch.json not yet
        return write(path, payload)

    export.write_json_atomic = write_arch
else:
    save = TrainLoop.checkpoint

    def checkpoint(self):
        save(self)
        if self.run.path.name == stage and self.state.step > 0:  # mid-epoch, inside the stage
            fire()

    TrainLoop.checkpoint = checkpoint
sys.exit(main(argv))
