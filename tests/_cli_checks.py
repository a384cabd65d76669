"""Shared assertions of the command-line fuzz tests (tests/test_cli_*.py): bad input gets one
sentence on stderr (no traceback) and an exit status, and nothing that existed is lost."""

from __future__ import annotations

import pathlib


def one_sentence(err: str) -> str:
    """The single error line of ``err`` (asserted: one non-empty line, a sentence, no
    traceback), without its ``error:`` prefix."""
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    line = lines[0]
    assert "error:" in line, line
    assert line.rstrip().endswith("."), line
    assert "<bound method" not in line, line
    return line.split("error:", 1)[1].strip()


def snapshot(root: pathlib.Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), to compare before and after."""
    root = pathlib.Path(root)
    if root.is_file():
        return {root.name: root.read_bytes()}
    return {
        str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()
    }
