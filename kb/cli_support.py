"""What every command-line entry point shares: the logging set-up and the exit status of an error.

``python -m kb`` (:mod:`kb.cli`) and ``python -m evaluation`` (:mod:`evaluation.cli`) run their
parsed command through :func:`run_command`, so an error ends both the same way: one ``error: ...``
line on stderr and a status, never a traceback for something the user can fix.

* :data:`EXIT_USER_ERROR` (2) — an exception in :data:`kb.errors.USER_ERRORS` (bad settings, a
  missing knowledge base, a corrupt index, a model that is not available offline, ...);
* :data:`EXIT_MODEL_CRASHED` (3) — :class:`~models.errors.ModelCrashedError`: the model process
  died; a status, never a signal (the model runs in its own process, :mod:`models.llm.process`);
* :data:`EXIT_INTERRUPTED` (130) — Ctrl-C.

Anything else is a bug and propagates with its traceback. argparse's own usage errors exit with 2
before a command runs.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from kb.errors import USER_ERRORS
from models.errors import ModelCrashedError

__all__ = ["EXIT_INTERRUPTED", "EXIT_MODEL_CRASHED", "EXIT_USER_ERROR", "USER_ERRORS", "run_command"]

EXIT_USER_ERROR = 2
EXIT_MODEL_CRASHED = 3
EXIT_INTERRUPTED = 130


def run_command(command: Callable[[], int], *, verbose: bool = False) -> int:
    """Set up logging (INFO with ``verbose``, else WARNING), run ``command()`` and return its status,
    or the status of the error it raised (above), after saying what went wrong on stderr."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return command()
    except ModelCrashedError as exc:  # (a user error too, but with its own status) after a partial answer
        print(f"\nerror: {exc}", file=sys.stderr)
        return EXIT_MODEL_CRASHED
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
