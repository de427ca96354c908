"""The one user-error type: what the user can fix (exit code 2), as opposed to a bug (exit 1).

Raised at the user-input boundaries: config files and overrides (``ConfigError`` is one),
command-line arguments, input files and annotation lists, shard specs, checkpoint files that
are not what they claim. Everything else that escapes a command is a bug: ``vjepa`` reports it
as a runtime failure (exit 1) and ``--debug`` shows its traceback. A subclass of ValueError, so
callers that catch ValueError keep working.
"""

from __future__ import annotations


class UsageError(ValueError):
    """A user error: a bad argument, config value or input file; the message names it."""
