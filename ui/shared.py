"""What the tabs share: the one declared cross-tab event, the shared components, the user errors.

Tabs never return values for each other's components. The knowledge-base list is the only thing
several tabs show, so it is the only thing they tell each other about: a tab that may have changed
it (or wants it re-read) writes a new :class:`KbListChanged` into :attr:`Shared.kb_list`, a
``gr.State``, and every tab with a knowledge-base dropdown listens to that State's ``change``
event and updates its own dropdown (see each tab's ``on_kb_list``). Each value carries a fresh
``seq``, so writing one always fires the event, even when the list itself is the same.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any, Literal

import gradio as gr

Origin = Literal["kbs", "chat", "page"]

_SEQ = itertools.count(1)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KbListChanged:
    """The list of knowledge bases may have changed: each tab re-reads it into its own dropdown.

    ``origin`` is the tab that said so (``"page"``: the page was just loaded); a tab ignores what it
    said itself, since its handler already updated its own components. ``selected`` is the knowledge
    base the action was about (a tab whose selection is gone falls back to it), ``created`` one that
    was just created (the chat switches to it from plain chat).
    """

    seq: int
    origin: Origin
    selected: str | None = None
    created: str | None = None


def announce(origin: Origin, selected: str | None = None, created: str | None = None) -> KbListChanged:
    """A new :class:`KbListChanged` (a fresh ``seq``, so the State's ``change`` always fires)."""
    return KbListChanged(next(_SEQ), origin, selected, created)


@dataclass
class Shared:
    """Components outside any one tab, built by :func:`ui.app.create_app` before the tabs."""

    banner: gr.HTML
    """The notice above the tabs while the models load (written by the Models tab's poll)."""
    kb_list: gr.State
    """Holds the last :class:`KbListChanged`; its ``change`` event is how tabs tell each other."""
    timer: gr.Timer
    """Ticks while the models load (the Models tab's poll stops it); outside the tabs, so it ticks
    whichever tab is shown."""


def pick(current: str | None, options: list[str], fallback: str | None) -> str | None:
    """``current`` if it is still one of ``options``, else ``fallback``.

    >>> pick("a", ["a", "b"], "b"), pick("gone", ["a", "b"], "b")
    ('a', 'b')
    """
    return current if current in options else fallback


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is meant for users (shown, not logged as crashes): the one list the
    CLI shares, :data:`kb.errors.USER_ERRORS`."""
    from kb.errors import USER_ERRORS

    return USER_ERRORS


def kb_names(kbs: Any) -> list[str]:
    """The knowledge bases for a dropdown; none while the vector store cannot be reached (a Milvus
    server down: the banner and each request say which backend and URI), so the page still loads."""
    from vector_store import StoreError

    try:
        return kbs.names()
    except StoreError as exc:
        log.warning("cannot list the knowledge bases: %s", exc)
        return []
