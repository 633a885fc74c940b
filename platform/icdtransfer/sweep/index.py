"""The member store's records: one marker per stored member, and the index that lists them.

A stored member's folder holds its files and, written last, `row.json`: its members.parquet
row. The marker is what says "this member is stored": a folder without one is what a writer
killed mid-write left, and is replaced. `index.jsonl` lists the markers' rows, one line each,
so a store does not have to open every member folder; it is derived from the markers and
repaired from them (a line lost to a kill between the folder and the line, or to two heads
pushing their copies of the index to one URI, comes back from the member's marker).

Every change to the index file happens under its exclusive lock, on the file itself (an
append, or a truncation of a torn tail): never a rewrite into a new file, which a writer
holding the lock on the old one would append to in vain.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from icdtransfer.data.errors import InputError

log = logging.getLogger(__name__)

INDEX = "index.jsonl"
MARKER = "row.json"  # in a member's folder, written last


def parse_index(path: Path, data: bytes, warn: bool = True) -> tuple[list[dict], int]:
    """The rows of an index file's bytes and how many bytes they span. A last line that does
    not parse (torn by a crash mid-append) is left out, with a warning; an unparsable line
    before the last is an InputError naming the file and the line."""
    lines = data.split(b"\n")
    rows, kept = [], 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            if number < len(lines) and any(rest.strip() for rest in lines[number:]):
                raise InputError(path, f"line {number}", "empty line in the member index")
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or "key" not in row or "seed" not in row:
                raise ValueError("not a member row")
        except ValueError:
            if any(rest.strip() for rest in lines[number:]):
                raise InputError(
                    path,
                    f"line {number}",
                    "not a member row, and lines follow it (a torn line is only ever the "
                    "last): the index is damaged; restore it from a backup or remove the line",
                ) from None
            if warn:
                log.warning(
                    "%s: line %d is cut short (a crash while it was written): dropped; its "
                    "member's marker restores it when the member was stored",
                    path,
                    number,
                )
            break
        rows.append(row)
        kept += len(line) + 1
    return rows, kept


def read_index(path: Path, repair: bool = True) -> list[dict]:
    """The index's rows (parse_index). With `repair`, a torn tail is cut off the file and a
    missing final newline added, under the file's lock, so the next append starts on a line of
    its own."""
    if not path.exists():
        return []
    if not repair:
        return parse_index(path, path.read_bytes())[0]
    with locked_index(path) as (rows, _):
        return rows


@contextlib.contextmanager
def locked_index(path: Path) -> Iterator[tuple[list[dict], Any]]:
    """The index's rows and a handle to append lines to, under the file's exclusive lock;
    a torn tail is cut off first (in place), and the appends are fsynced before the lock is
    released."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.seek(0)
            data = handle.read()
            rows, kept = parse_index(path, data)
            if kept > len(data):  # a last line without its newline: complete it
                handle.write(b"\n")
            elif kept < len(data):
                handle.truncate(kept)
            writer = _LineWriter(handle)
            yield rows, writer
            if writer.lines or kept != len(data):
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _LineWriter:
    def __init__(self, handle: Any) -> None:
        self.handle, self.lines = handle, 0

    def write(self, row: dict) -> None:
        self.handle.seek(0, os.SEEK_END)
        self.handle.write((json.dumps(row) + "\n").encode())
        self.lines += 1


def local_markers(store: Path) -> dict[tuple[str, int], Path]:
    """(key, seed) -> marker of every member stored in the folder `store`."""
    found = {}
    for marker in store.glob(f"*/seed*/{MARKER}"):
        try:
            seed = int(marker.parent.name[len("seed") :])
        except ValueError:
            continue
        found[(marker.parent.parent.name, seed)] = marker
    return found


def read_marker(path: Path) -> dict | None:
    """A member's row from its marker; None when the marker is unreadable (then the member
    counts as not stored)."""
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return row if isinstance(row, dict) and "key" in row and "seed" in row else None
