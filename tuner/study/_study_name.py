"""Study names: they become file names (`<profile-dir>/<study>.yaml`), so they are checked,
never rewritten: a name that could leave the profile folder, make folders or not fit a file
name is refused before anything runs."""

from __future__ import annotations

from tuner.errors import UserError

MAX_STUDY_NAME = 100


def check_study_name(name: str) -> str:
    """`name` when it is safe as a file name; a UserError naming the rule otherwise."""
    why = None
    if not name.strip():
        why = "is empty"
    elif len(name) > MAX_STUDY_NAME:
        why = f"has {len(name)} characters (at most {MAX_STUDY_NAME})"
    elif "/" in name or "\\" in name:
        why = "contains a path separator"
    elif ".." in name:
        why = "contains '..'"
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        why = "contains a control character"
    elif name.startswith(".") or (len(name) > 1 and name[1] == ":"):
        why = "starts with '.' or a drive letter"
    if why is None:
        return name
    shown = repr(name if len(name) <= 40 else name[:37] + "...")
    raise UserError(
        f"study name {shown} {why}; use letters, digits, '-', '_' or '.' "
        f"(at most {MAX_STUDY_NAME} characters, no path)"
    )
