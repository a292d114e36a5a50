"""The family of errors that mean "bad input from the user": the CLI prints them as one line.

Every module that checks user input raises a subclass of :class:`UserError` (recipes,
datasets, checkpoints, run directories, component options). Anything else is a bug and keeps
its traceback.
"""
from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user; the message says what was wrong, where, and what is allowed."""


class OptionError(UserError):
    """A component's ``{name, ...options}`` does not fit the component (unknown or missing option)."""


class BudgetError(UserError):
    """A cost budget admits no architecture of the space."""


# ValueError and KeyError are still raised for user input in older modules; they are printed as
# one line too until each is moved onto UserError.
USER_ERRORS: tuple[type[Exception], ...] = (UserError, ValueError, KeyError)
