from dataclasses import dataclass

import pytest

from nas_kd.config import RecipeError, load_recipe


def write(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_committed_recipes_load():
    r = load_recipe("recipes/teacher_fmnist.yaml")
    assert r.teacher.model == "resnet_fmnist" and r.train.weight_decay == 5e-4


def test_unknown_key_names_key_and_file(tmp_path):
    p = write(tmp_path, "train:\n  lrr: 0.1\n")
    with pytest.raises(RecipeError, match=r"r\.yaml: train: unknown key 'lrr' \(did you mean 'lr'\?\)"):
        load_recipe(p)


def test_unknown_section(tmp_path):
    with pytest.raises(RecipeError, match="unknown key 'trian'"):
        load_recipe(write(tmp_path, "trian: {}\n"))


def test_wrong_type(tmp_path):
    with pytest.raises(RecipeError, match=r"train\.epochs: expected int, got 'ten'"):
        load_recipe(write(tmp_path, "train:\n  epochs: ten\n"))
    with pytest.raises(RecipeError, match=r"data\.flip: expected bool"):
        load_recipe(write(tmp_path, "data:\n  flip: 3\n"))


def test_missing_required_key(tmp_path):
    @dataclass
    class Needs:
        budget: float

    with pytest.raises(RecipeError, match="missing required key 'budget'"):
        load_recipe(write(tmp_path, "{}\n"), cls=Needs)


def test_overrides_and_numbers(tmp_path):
    p = write(tmp_path, "train:\n  weight_decay: 5e-4\n  lr: 1\n")
    r = load_recipe(p, ["train.epochs=3", "data.root=/x", "teacher.kwargs={widths: [8, 8, 8, 8]}"])
    assert r.train.weight_decay == 5e-4 and isinstance(r.train.lr, float)
    assert r.train.epochs == 3 and r.data.root == "/x" and r.teacher.kwargs == {"widths": [8, 8, 8, 8]}
    with pytest.raises(RecipeError, match="expected key.sub=value"):
        load_recipe(p, ["train.epochs"])


def test_invalid_yaml(tmp_path):
    with pytest.raises(RecipeError, match="not valid YAML") as e:
        load_recipe(write(tmp_path, "train: [unclosed\n"))
    assert "\n" not in str(e.value) and "at line 2, column 1" in str(e.value)  # one line, saying where
    with pytest.raises(RecipeError, match="cannot read recipe"):
        load_recipe(tmp_path / "missing.yaml")
    with pytest.raises(RecipeError, match=r"the recipe is empty .*nas-kd run --recipe recipes/quickstart.yaml"):
        load_recipe(write(tmp_path, "# only a comment\n"))  # never a default run on the full data
    with pytest.raises(RecipeError, match=r"--set 'train.epochs=\[1': the value is not valid YAML") as e:
        load_recipe(None, ["train.epochs=[1"])
    assert "\n" not in str(e.value)


def test_the_command_line_says_a_bad_recipe_in_one_line(tmp_path, capsys):
    from nas_kd.cli import main

    (tmp_path / "bad.yaml").write_text("seed: 0\ndata: {dataset: [\n")
    (tmp_path / "empty.yaml").write_text("")
    for args in (["--recipe", "recipes/quickstart.yaml", "--set", "search.trials=[1"],
                 ["--recipe", str(tmp_path / "bad.yaml")], ["--recipe", str(tmp_path / "empty.yaml")]):
        assert main(["run", *args, "--set", f"run.out_dir={tmp_path}/runs"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("nas-kd run: error: ") and "\n" not in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("override, message", [
    ("train.epochs=-1", "train.epochs: must be >= 0"),
    ("train.lr=0", "train.lr: must be > 0"),
    ("search.budget_mflops=.nan", "search.budget_mflops: must be a finite number"),
    ("search.budget_mflops=.inf", "search.budget_mflops: must be a finite number"),
    ("data.batch_size=0", "data.batch_size: must be >= 1"),
    ("pipeline.budget_fraction_of_teacher=1.5", "must be > 0 and <= 1"),
])
def test_numbers_are_checked_at_load(override, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(None, [override])


@pytest.mark.parametrize("argv, message", [
    (["search", "--recipe", "recipes/search_fmnist.yaml", "--budget-mflops", "nan"], "finite number > 0"),
    (["dna-search", "--tables", "t.json", "--budget-fraction", "nan"], "finite number > 0 and <= 1"),
    (["dna-search", "--tables", "t.json", "--budget-fraction", "2"], "<= 1"),
    (["export", "--out", "x", "--finetune-epochs", "-1"], ">= 0"),
])
def test_command_line_numbers_are_checked(argv, message, capsys):
    from nas_kd.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_derive_makes_a_checked_copy():
    from nas_kd.config import derive

    base = load_recipe(None)
    r = derive(base, {"train.epochs": 3, "run.name": "x", "distill": [{"name": "kd"}]})
    assert (r.train.epochs, r.run.name, r.distill) == (3, "x", [{"name": "kd"}])
    assert (base.train.epochs, base.run.name, base.distill) == (20, "run", [])  # the original is untouched
    with pytest.raises(RecipeError, match="'train.epoch' is not a recipe key"):
        derive(base, {"train.epoch": 3})
    with pytest.raises(RecipeError, match="train.epochs: must be >= 0"):
        derive(base, {"train.epochs": -1})


OLD = """supernet:
  space: resnet
  num_random: 3
  distill: [{name: kd}]
  soft_labels: teacher
  max_teacher_weight: 0.5
search:
  strategy: evolution
  strategy_options: {population: 7}
"""


def test_the_older_spelling_loads_with_one_line_saying_how_to_write_it(tmp_path, capsys):
    """Sandwich options at the top of ``supernet:`` and ``search.strategy_options`` still load, moved into the
    components they belong to, with one line on stderr; an override of an old key wins over the file."""
    from nas_kd.recipe_checks import load_checked

    r = load_checked(write(tmp_path, OLD), ["supernet.soft_labels=mix"])
    assert r.supernet.mode == {"name": "sandwich", "num_random": 3, "distill": [{"name": "kd"}], "soft_labels": "mix",
                               "max_teacher_weight": 0.5}
    assert r.search.strategy == {"name": "evolution", "population": 7}
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "deprecated spelling" in err and "write supernet.mode: {" in err
    spos = load_checked(write(tmp_path, OLD.replace("  space: resnet", "  space: resnet\n  mode: spos")))
    assert spos.supernet.mode["name"] == "spos" and "num_random" not in spos.supernet.mode  # spos never took it
    assert "dropped" in capsys.readouterr().err


def test_a_components_options_can_be_set_beside_its_bare_name(tmp_path):
    r = load_recipe(write(tmp_path, "search:\n  strategy: random\n"), ["search.strategy.proposals_per_trial=3"])
    assert r.search.strategy == {"name": "random", "proposals_per_trial": 3}
