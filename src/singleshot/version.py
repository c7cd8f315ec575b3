"""The package version, a leaf: weight files record it, ``singleshot --version`` prints it."""

__version__ = "0.1.0"
