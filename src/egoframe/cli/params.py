"""Parsers for command-line values that typer's own types let through."""

from __future__ import annotations

import math

import typer


def finite_float(text: str | float) -> float:
    """A float option that refuses ``nan`` and ``inf`` as a usage error (``--image-scale nan`` would sample an
    all-black frame, ``--timeout nan`` crash deep in the HTTP client)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise typer.BadParameter(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise typer.BadParameter(f"{text} is not a finite number")
    return value
