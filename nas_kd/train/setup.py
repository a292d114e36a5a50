"""What every trainer does first: load the recipe's data, open the run directory, seed."""
from __future__ import annotations

from nas_kd.config import Recipe
from nas_kd.data import BatchIterator, DataBundle, load_dataset
from nas_kd.provenance import origin
from nas_kd.runs import RunDir
from nas_kd.train.common import seed_everything, set_threads


def load_data(recipe: Recipe) -> DataBundle:
    """The recipe's dataset, split and normalised."""
    d = recipe.data
    return load_dataset(
        d.dataset, d.root, val_size=d.val_size, split_seed=d.split_seed,
        limit_train=d.limit_train, limit_test=d.limit_test,
    )


def train_batches(recipe: Recipe, data: DataBundle) -> BatchIterator:
    """Shuffled, augmented training batches seeded by the recipe."""
    return BatchIterator(
        data.train, recipe.data.batch_size, shuffle=True, seed=recipe.seed,
        augment_pad=recipe.data.augment_pad, pad_value=data.pad_value,
        flip=recipe.data.flip and data.flip, drop_last=True,
    )


def start_run(recipe: Recipe, resume: bool) -> tuple[dict[str, str], RunDir, DataBundle]:
    """Record the run's origin, open its directory, seed everything, set threads and load the data."""
    started = origin()
    run = RunDir.open(recipe, resume)
    seed_everything(recipe.seed)
    set_threads(recipe.train.threads)
    return started, run, load_data(recipe)
