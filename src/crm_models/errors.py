"""User-facing errors.

Anything a user can cause (a bad file, a bad config, a wrong argument) raises a subclass of
:class:`CrmModelsError`. The CLI prints its message and exits non-zero, without a traceback;
everything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class CrmModelsError(Exception):
    """A problem the user can fix; its message says what and where."""

    exit_code: int = 1


class ConfigError(CrmModelsError):
    """The experiment config is invalid (unknown key, wrong type, bad override)."""

    exit_code = 2


class DataError(CrmModelsError):
    """Input data cannot be read or does not meet its contract."""


class ModelInputError(CrmModelsError):
    """A model was given data it cannot fit or predict (no events, NaN durations, ...)."""
