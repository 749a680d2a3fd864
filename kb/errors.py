"""The errors of the ``kb`` layer, and :data:`USER_ERRORS`: which exceptions are meant for users.

Each error's message says what is wrong and how to fix it, so the entry points (the CLI, the web
app, the evaluation) show it as it is instead of a traceback. They decide *what* to show with one
tuple, :data:`USER_ERRORS`, instead of each keeping its own list::

    try:
        ...
    except ModelCrashedError:   # only where a crash needs its own handling (the CLI: status 3)
        ...
    except USER_ERRORS as exc:  # the message is for the user: show it, do not log a crash
        ...

The lower layers keep their own errors (``models.errors``, ``vector_store.StoreError``,
``loaders.LoaderError``); the ones a user can meet through ``kb`` are listed in :data:`USER_ERRORS`.
(``LoaderError`` is not: a file that cannot be read is reported per file in an ingest report, never
raised to the caller.)
"""

from __future__ import annotations

from models.errors import BundledModelError, ModelConfigError, ModelCrashedError, ModelUnavailableError
from vector_store import StoreError

__all__ = [
    "USER_ERRORS",
    "KnowledgeBaseError",
    "PromptTooLongError",
    "QAError",
    "SettingsError",
]


class KnowledgeBaseError(ValueError):
    """A request about a knowledge base cannot be served (bad name, missing, already exists...)."""


class QAError(ValueError):
    """A question cannot be answered as asked (e.g. it is empty)."""


class PromptTooLongError(ValueError):
    """The question alone (with the instructions) does not fit the model's context window."""


class SettingsError(ValueError):
    """A settings file, profile or override is invalid; the message says which and why."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    ModelCrashedError,  # first: the CLI catches it before this tuple (exit status 3, not 2)
    KnowledgeBaseError,
    QAError,
    PromptTooLongError,
    SettingsError,
    StoreError,  # and its ModelMismatchError
    ModelUnavailableError,
    BundledModelError,
    ModelConfigError,
    FileNotFoundError,  # a file of a knowledge base vanished meanwhile (e.g. deleted by another process)
)
"""Exceptions whose message is meant for users: shown as they are, not logged as crashes.

The one list the CLI (exit status 2; 3 for :class:`~models.errors.ModelCrashedError`), ``chat``,
the web app and the evaluation use."""
