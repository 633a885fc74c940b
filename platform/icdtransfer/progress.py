"""Progress bars for long loops: on stderr, at most one refresh a second, and off when stderr
is not a terminal (CI logs, captured output), where the per-epoch log lines say enough."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(
    items: Iterable[T], desc: str, unit: str, total: int | None = None, leave: bool = True
) -> Iterator[T]:
    return iter(
        tqdm(items, desc=desc, unit=unit, total=total, leave=leave, mininterval=1.0, disable=None)
    )
