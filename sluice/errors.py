"""The one error family for wrong input: every "this field is wrong, because ..." derives from
`InputError`, so serving maps them all to HTTP in one place (serving/api/errors.py): the native
API answers 422 `{"detail": [{"field", "reason"}]}`, the Personalize API its AWS shapes.
"""

from __future__ import annotations


class InputError(ValueError):
    """A field of the input is wrong: names the field and the reason (what to send instead)."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


class NotFoundError(InputError):
    """The input names something that does not exist (a tracker, a filter, a dataset group)."""


class OperatorError(RuntimeError):
    """The home or the environment stops a command, and the message says, in one line, what
    the operator does next (the CLI prints it alone, without a traceback hint)."""


class NotReadyError(RuntimeError):
    """A command cannot run yet: names what is missing and the command that makes it (checked
    before a flow starts, so the operator reads one line instead of waiting for Prefect)."""
