"""Document loaders: one module per format, chosen by file extension in one registry."""

from loaders.base import LoadedDocument, LoaderError

__all__ = ["LoadedDocument", "LoaderError"]
