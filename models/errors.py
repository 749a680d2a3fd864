"""Typed errors of the model layer; each message says what is wrong and how to fix it."""


class BundledModelError(RuntimeError):
    """A bundled model file is missing, incomplete or fails its checksum."""


class ModelUnavailableError(RuntimeError):
    """A configured model cannot be loaded offline; the message says how to provide it."""


class ModelConfigError(ValueError):
    """The LLM settings ask for something this machine cannot do (e.g. 4-bit quantization on CPU)."""
