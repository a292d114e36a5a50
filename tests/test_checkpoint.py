import pickle

import pytest
import torch

from nas_kd.checkpoint import (
    CheckpointError,
    load_checkpoint,
    model_state,
    save_checkpoint,
)


def test_roundtrip(tmp_path):
    state = {"model": {"w": torch.arange(4.0)}, "epoch": 3, "nested": {"xs": [1, 2]}}
    save_checkpoint(state, tmp_path / "c.pt")
    back = load_checkpoint(tmp_path / "c.pt")
    assert back["epoch"] == 3 and torch.equal(back["model"]["w"], torch.arange(4.0)) and back["nested"] == {"xs": [1, 2]}
    assert model_state(back)["w"].shape == (4,)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind


def test_truncated(tmp_path):
    save_checkpoint({"model": {"w": torch.randn(1000)}}, tmp_path / "c.pt")
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "c.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"c\.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "c.pt")


def test_foreign_and_missing(tmp_path):
    (tmp_path / "t.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"w": torch.ones(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a nas_kd checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    assert "w" in load_checkpoint(tmp_path / "plain.pt", require_format=False)


def test_never_unpickles_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "e.pt").write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "e.pt", require_format=False)
