"""The training loop's stop on SIGINT / SIGTERM: where the signal lands decides where the run stops (tiny model)."""
import os
import signal

import pytest
import torch

from nas_kd.data import BatchIterator
from nas_kd.data.splits import Split
from nas_kd.errors import Stopped
from nas_kd.runs import RunDir
from nas_kd.train.loop import TrainLoop


def loop(tmp_path, epochs=3):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    split = Split(torch.randn(16, 4), torch.randint(0, 2, (16,)))
    run = RunDir(tmp_path)
    run.path.mkdir(parents=True, exist_ok=True)
    return TrainLoop(run, model, opt, sched, BatchIterator(split, 4), epochs, show_progress=False)


def step(model):
    def fn(x, y):
        loss = torch.nn.functional.cross_entropy(model(x.flatten(1)), y)
        loss.backward()
        return {"loss": loss.item(), "count": 1.0}
    return fn


def test_a_signal_during_the_epochs_evaluation_stops_right_after_the_epochs_checkpoint(tmp_path):
    tl, before = loop(tmp_path), signal.getsignal(signal.SIGTERM)

    def evaluate(epoch):
        if epoch == 0:
            os.kill(os.getpid(), signal.SIGTERM)
        return {"val": 0.0}

    with pytest.raises(Stopped, match="stopped by SIGTERM after epoch 1, with a checkpoint"):
        tl.fit(step(tl.model), evaluate)
    assert (tl.state.epoch, tl.state.step) == (1, 0)  # not one step into the next epoch
    assert torch.load(tl.run.last_checkpoint, weights_only=False)["loop"]["epoch"] == 1
    assert len(tl.run.metrics()) == 1 and signal.getsignal(signal.SIGTERM) == before  # the handler restored


def test_a_second_signal_stops_at_once(tmp_path):
    tl = loop(tmp_path)

    def evaluate(epoch):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        raise AssertionError("the second signal did not stop the evaluation")

    with pytest.raises(Stopped, match="second SIGINT"):
        tl.fit(step(tl.model), evaluate)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are restored


def test_a_signal_during_the_last_evaluation_is_raised_again_once_the_training_ends(tmp_path):
    tl = loop(tmp_path, epochs=2)

    def evaluate(epoch):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return {"val": 0.0}

    with pytest.raises(KeyboardInterrupt):  # not swallowed: a pipeline does not go on to its next stage
        tl.fit(step(tl.model), evaluate)
    assert torch.load(tl.run.last_checkpoint, weights_only=False)["loop"]["epoch"] == 2  # the training is kept
