"""The one error type for bad input: it names the file, the record and the problem."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input. The message never quotes document text: only paths, record ids and codes."""

    def __init__(self, path: str | Path, record: str | None, problem: str) -> None:
        self.path = str(path)
        self.record = record
        self.problem = problem
        where = f"{self.path}: {record}" if record else self.path
        super().__init__(f"{where}: {problem}")

    def __reduce__(self) -> tuple:
        # Rebuild from the three parts, so the error survives a trip through a process pool.
        return (type(self), (self.path, self.record, self.problem))
