import torch
import torch.nn as nn

import search_spaces
from nas_kd.checkpoint import save_checkpoint
from nas_kd.config import load_recipe
from nas_kd import recipes
from nas_kd.dna import ranking
from nas_kd.dna.blockwise import BlockwiseSupernet, stage_io, teacher_channels


class Fill(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x):
        return torch.full((x.shape[0], 4, 5, 5), self.value)


class ToyTeacher(nn.Module):
    """Stage k outputs a tensor filled with k (the stem with 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = Fill(0.0)
        for k in range(1, 5):
            setattr(self, f"stage{k}", Fill(float(k)))
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        for name in ("stem", "stage1", "stage2", "stage3", "stage4"):
            x = getattr(self, name)(x)
        return x.mean((2, 3))


def test_stage_i_gets_teacher_stage_i_minus_1_and_targets_stage_i():
    pairs = stage_io(ToyTeacher(), ["stem", "stage1", "stage2", "stage3", "stage4"], torch.zeros(3, 1, 28, 28))
    assert len(pairs) == 4
    for i, (inp, target) in enumerate(pairs, start=1):
        assert torch.all(inp == i - 1) and torch.all(target == i)


def test_ranking_table_has_every_candidate_of_every_stage(tmp_path, fmnist_root, monkeypatch):
    recipe = load_recipe("recipes/dna_fmnist.yaml", [f"data.root={fmnist_root}", "data.limit_train=256",
                                                     "data.val_size=64", "rankcorr.probe_size=32",
                                                     "supernet.bn_batches=1", "data.batch_size=32"])
    from nas_kd.teacher import load_teacher

    space = search_spaces.get("resnet")
    widths = teacher_channels(load_teacher(recipe.teacher), recipe.teacher.stages, (1, 28, 28))
    model = BlockwiseSupernet(space, widths)
    save_checkpoint({"model": model.state_dict(), "blockwise": model.meta()}, tmp_path / "b.pt")
    monkeypatch.setattr(ranking, "candidate_scores", lambda *a: {s: 1.0 for s in ranking.SCORES})
    tables = recipes.rank_stages(recipe, tmp_path / "b.pt", tmp_path / "t.json", show_progress=False)
    for i, st in enumerate(tables["stages"], start=1):
        keys = {str(sorted(c["cand"].items())) for c in st["candidates"]}
        assert len(keys) == len(st["candidates"]) == space.stage_size(i)
        cins = [space.stem_width] if i == 1 else space.stages[i - 2].widths
        assert all(set(c["flops"]) == {str(w) for w in cins} for c in st["candidates"])


def test_one_real_candidate_score_is_sane(fmnist_root):
    space = search_spaces.get("resnet")
    model = BlockwiseSupernet(space, [32, 32, 64, 128, 256]).eval()
    x = torch.randn(8, 32, 28, 28)
    t = torch.randn(8, 32, 28, 28)
    cand = {k: v for k, v in space.max_arch().items() if k.startswith("stage1.")}
    s = ranking.candidate_scores(model, 1, cand, [x], [x], [t])
    assert set(s) == set(ranking.SCORES) and all(v > 0 for v in s.values())
