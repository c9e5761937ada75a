"""The one root of every error Waft raises on purpose.

A caller that wants "anything Waft refused" catches `WaftError`; the CLI prints such an error in one
line and exits 1, and shows a traceback only for what is not one (a bug). Each room subclasses it
next to the code that raises, so the kind stays local while the catch stays global.
"""

from __future__ import annotations


class WaftError(Exception):
    """Something Waft refused or could not do, with a message meant for the user."""


class SettingError(WaftError, ValueError):
    """A setting (flag or environment variable) holds a value that cannot be used."""
