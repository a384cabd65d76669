"""What the task records share: the error for a bad puzzle and two small helpers."""

from __future__ import annotations

import math


class PuzzleError(ValueError):
    """A puzzle that is malformed or does not fit the model (one sentence)."""


def square_side(n: int) -> int | None:
    """The side of a square of ``n`` cells (at least 2x2), or None."""
    side = math.isqrt(n)
    return side if side > 1 and side * side == n else None


def side_by_side(left: list[str], right: list[str], gap: str = "    ") -> list[str]:
    w = max(len(s) for s in left)
    n = max(len(left), len(right))
    left = left + [""] * (n - len(left))
    right = right + [""] * (n - len(right))
    return [f"{a.ljust(w)}{gap}{b}".rstrip() for a, b in zip(left, right)]
