"""The family of errors that mean "bad input from the user": the CLI prints them as one line.

Every module that checks user input raises a subclass of :class:`UserError` (recipes,
datasets, checkpoints, run directories, component options). Anything else is a bug and keeps
its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input from the user; the message says what was wrong, where, and what is allowed.

    Its own family (not a ``ValueError``): an ``except UserError`` never swallows a bug, and an ``except
    ValueError`` around library code never turns this into something else."""


class UnknownName(UserError, KeyError):
    """A name that no registry holds (the message lists close matches and the valid names)."""

    __str__ = Exception.__str__


class OptionError(UserError):
    """A component's ``{name, ...options}`` does not fit the component (unknown or missing option)."""


class BudgetError(UserError):
    """A cost budget admits no architecture of the space."""


class Diverged(UserError):
    """Training produced non-finite numbers (a learning rate too high for the model, usually); the message names
    where, and the run's last checkpoint is kept."""


class Stopped(UserError):
    """A run stopped on request (SIGINT / SIGTERM) at a step boundary, its checkpoint written; the message says
    how to continue."""


USER_ERRORS: tuple[type[Exception], ...] = (UserError,)


class RunDirError(UserError):
    """The run directory cannot be used as asked (in use by another command, a finished run, or a run of another
    recipe)."""
