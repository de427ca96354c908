"""The pairs CSV of `vjepa surprise`: ``possible,impossible[,category]``, paths relative to it."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from vjepa.errors import UsageError

PAIRS_HEADER = ("possible", "impossible")
"""Required CSV columns (in this order); an optional third column is ``category``."""


class PairsError(UsageError):
    """A bad pairs CSV; the message names the file and line."""


@dataclass(frozen=True)
class Pair:
    """One possible / impossible pair of videos."""

    possible: Path
    impossible: Path
    category: str
    line: int
    """Line of the CSV it came from (1 = header)."""


def read_pairs(path: str | Path) -> list[Pair]:
    """Read a pairs CSV: header ``possible,impossible[,category]``, paths relative to the CSV.

    Every problem (missing file, wrong header, a row with too few or too many columns, a
    missing video) is a :class:`PairsError` naming the line; all rows are checked first.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"surprise.pairs: {path}: no such file")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise PairsError(f"{path}: empty; expected a header 'possible,impossible[,category]'")
    header = tuple(c.strip() for c in rows[0])
    if header not in (PAIRS_HEADER, (*PAIRS_HEADER, "category")):
        raise PairsError(
            f"{path} line 1: header {','.join(header)!r} is not 'possible,impossible' or "
            "'possible,impossible,category'"
        )
    pairs = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue  # blank line
        if len(row) != len(header):
            raise PairsError(
                f"{path} line {line}: {len(row)} columns, the header has {len(header)} "
                f"({','.join(header)})"
            )
        possible, impossible = (path.parent / row[i].strip() for i in range(2))
        for name, video in (("possible", possible), ("impossible", impossible)):
            if not video.is_file():
                raise PairsError(f"{path} line {line}: {name} video {video} not found")
        category = row[2].strip() if len(row) > 2 else "all"
        pairs.append(Pair(possible, impossible, category or "all", line))
    if not pairs:
        raise PairsError(f"{path}: no pairs after the header")
    return pairs
