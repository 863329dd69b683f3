"""User-facing errors: one line that says what was wrong and what is allowed."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CromoError(Exception):
    """An error caused by the user's input; the CLI prints it as one line and exits non-zero."""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> CromoError:
    """Build the error for an unknown registry name, listing the valid ones and the closest match."""
    valid = sorted(choices)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return CromoError(f"unknown {kind} '{name}'.{hint} Valid {kind}s: {', '.join(valid)}.")
