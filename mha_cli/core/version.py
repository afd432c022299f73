"""The package's version, here so every layer can read it without importing the public API."""

__version__ = "0.2.0"
