"""Agent mode: a tool-using loop over the knowledge base that works with a small local model.

Modules: :mod:`~kb.agent.tools` (the tools and which a question sees), :mod:`~kb.agent.parser`
(one lenient reader of small models' tool calls), :mod:`~kb.agent.prompts`, :mod:`~kb.agent.loop`
(:class:`AgentService`: ReAct and ReWOO, always ending with an answer), :mod:`~kb.agent.calculator`
(AST arithmetic), :mod:`~kb.agent.sandbox` (the ``python`` tool's limited child process),
:mod:`~kb.agent.cli` (``python -m kb agent``).
"""

from kb.agent.loop import AgentDone, AgentResult, AgentService, Step, StepDone, StepStarted, Token
from kb.agent.tools import ChapterSummaries

__all__ = [
    "AgentDone",
    "AgentResult",
    "AgentService",
    "ChapterSummaries",
    "Step",
    "StepDone",
    "StepStarted",
    "Token",
]
