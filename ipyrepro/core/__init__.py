"""The recipe and its truth, without Jupyter: the one state object, flags, seeding, lazy import hooks, status.

Imports no other subpackage of ipyrepro (see ARCHITECTURE.md).
"""

__version__ = "0.1.0"  # the package's version, here so that every layer can read it
