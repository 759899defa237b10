"""Utilities the rest of the package builds on; they import nothing else of ``cascade``."""
