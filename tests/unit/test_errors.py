"""kb.errors: one list of the exceptions whose message is meant for users, used by every entry point."""

from __future__ import annotations

import kb.cli_support
import kb.prompt
import kb.qa
import kb.service
import kb.settings
from kb import errors
from models.errors import BundledModelError, ModelConfigError, ModelCrashedError, ModelUnavailableError
from vector_store import ModelMismatchError, StoreError


def test_user_errors_cover_every_error_a_user_can_meet() -> None:
    for exc in (
        errors.KnowledgeBaseError,
        errors.QAError,
        errors.PromptTooLongError,
        errors.SettingsError,
        StoreError,
        ModelMismatchError,
        ModelCrashedError,
        ModelUnavailableError,
        BundledModelError,
        ModelConfigError,
    ):
        assert issubclass(exc, errors.USER_ERRORS), exc


def test_bugs_are_not_user_errors() -> None:
    for exc in (KeyError, TypeError, AttributeError, RuntimeError, AssertionError):
        assert not issubclass(exc, errors.USER_ERRORS), exc


def test_the_entry_points_share_the_one_list() -> None:
    assert kb.cli_support.USER_ERRORS is errors.USER_ERRORS  # python -m kb and python -m evaluation
    from ui.shared import user_errors

    assert user_errors() is errors.USER_ERRORS


def test_the_errors_are_still_importable_where_they_are_raised() -> None:
    assert kb.service.KnowledgeBaseError is errors.KnowledgeBaseError
    assert kb.qa.QAError is errors.QAError
    assert kb.prompt.PromptTooLongError is errors.PromptTooLongError
    assert kb.settings.SettingsError is errors.SettingsError
