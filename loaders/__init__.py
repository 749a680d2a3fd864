"""Document loaders: one module per format, chosen by file extension in one registry."""

from loaders.base import LoadedDocument, LoaderError
from loaders.registry import load_document, supported_extensions

__all__ = ["LoadedDocument", "LoaderError", "load_document", "supported_extensions"]
