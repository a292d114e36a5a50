"""The errors that mean "bad input from the user" (the CLI prints them as one line, not a trace)."""
from nas_kd.checkpoint import CheckpointError
from nas_kd.config import RecipeError
from nas_kd.data import DatasetError
from nas_kd.runs import RunDirError

USER_ERRORS: tuple[type[Exception], ...] = (RecipeError, DatasetError, CheckpointError, RunDirError, ValueError, KeyError)
