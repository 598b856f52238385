"""Errors the CLI turns into a one-line message and exit code 2."""


class UserError(Exception):
    """Bad input or an environment problem the user can fix; the message says what and how."""

    exit_code = 2


class StudyAborted(UserError):
    """The study was stopped on purpose (e.g. every trial crashes the same way)."""
