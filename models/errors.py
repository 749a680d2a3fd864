"""Typed errors of the model layer; each message says what is wrong and how to fix it."""


class BundledModelError(RuntimeError):
    """A bundled model file is missing, incomplete or fails its checksum."""


class ModelUnavailableError(RuntimeError):
    """A configured model cannot be loaded offline; the message says how to provide it."""


class ModelConfigError(ValueError):
    """The LLM settings ask for something this machine cannot do (e.g. 4-bit quantization on CPU)."""


class ModelCrashedError(RuntimeError):
    """The model process died (a native crash, the OOM killer, ``kill -9``) or keeps dying on start.

    ``str()`` is one line naming the cause (signal or exit status) and the log; ``log_tail`` holds
    the last lines the process wrote, for a UI that can show more than one line.
    """

    def __init__(self, message: str, log_tail: list[str] | None = None) -> None:
        super().__init__(message)
        self.log_tail = list(log_tail or [])
