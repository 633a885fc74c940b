"""The one error type for bad input: it names the file, the record and the problem."""

from __future__ import annotations

import re
from pathlib import Path

# Quoted whole: what looks like an id or a code (ROW_ID 1234, 428.21, 10000032-DS-21).
_ID_LIKE = re.compile(r"[A-Za-z0-9._:/-]{1,16}")
KEEP = 4  # characters of anything else that an error message may show


class InputError(ValueError):
    """Bad input. The message never quotes document text: only paths, record ids and codes."""

    def __init__(self, path: str | Path, record: str | None, problem: str) -> None:
        self.path = str(path)
        self.record = record
        # one line: a parser's message (lxml's, csv's) may hold a newline
        self.problem = " ".join(str(problem).split())
        where = f"{self.path}: {record}" if record else self.path
        super().__init__(f"{where}: {self.problem}")

    def __reduce__(self) -> tuple:
        # Rebuild from the three parts, so the error survives a trip through a process pool.
        return (type(self), (self.path, self.record, self.problem))


def clip(value: object) -> str:
    """A raw field value as an error message may quote it.

    An id or a code (letters, digits and . _ : / -, at most 16 characters) is kept whole;
    anything else is cut to its first few characters and its length. In an export with shifted
    columns the field that should hold a ROW_ID or a code can hold note text, and note text
    never goes into a message or a log.
    """
    text = str(value)
    if _ID_LIKE.fullmatch(text):
        return text
    return f"{text[:KEEP]}…[{len(text)} characters]"
