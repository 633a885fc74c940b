"""Locating and opening input files: package resources, globs, gzip, and decoding policy."""

from __future__ import annotations

import contextlib
import glob
import gzip
import importlib.metadata
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from icdtransfer.data.errors import InputError

PACKAGE_PREFIX = "pkg:"
_SURROGATES = re.compile("[\udc80-\udcff]")


def resolve_inputs(spec: str) -> list[Path]:
    """Turn a params `input` value into existing files.

    `pkg:<distribution>/<path>` is a file installed with a package (located through
    importlib.metadata, never downloaded); a value with `*`, `?` or `[` is a glob; anything
    else is one path.
    """
    if spec.startswith(PACKAGE_PREFIX):
        dist_name, _, relative = spec[len(PACKAGE_PREFIX) :].partition("/")
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            raise InputError(spec, None, f"package {dist_name!r} is not installed") from None
        path = Path(str(dist.locate_file(relative)))
        if not path.is_file():
            raise InputError(spec, None, f"package {dist_name!r} has no file {relative!r}")
        return [path]
    if any(ch in spec for ch in "*?["):
        matches = sorted(Path(p) for p in glob.glob(spec))
        files = [p for p in matches if p.is_file()]
        if not files:
            raise InputError(spec, None, "no file matches this pattern")
        return files
    path = Path(spec)
    if not path.is_file():
        raise InputError(path, None, "file not found")
    return [path]


def open_binary(path: Path) -> IO[bytes]:
    """Open a file for reading bytes, decompressing gzip (by magic bytes, not by name)."""
    handle = open(path, "rb")  # noqa: SIM115 - returned to the caller
    magic = handle.read(2)
    handle.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=handle, mode="rb")  # type: ignore[return-value]
    return handle


@contextlib.contextmanager
def compressed_stream_errors(path: Path, where: Callable[[], str | None]) -> Iterator[None]:
    """Turn a truncated or corrupt gzip stream into an InputError naming the last record."""
    try:
        yield
    except EOFError:
        raise InputError(
            path, where(), "truncated gzip: the compressed stream ends before its end marker"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise InputError(path, where(), f"corrupt gzip data ({err})") from None


def check_text(text: str, path: Path, record: str, errors: str) -> tuple[str, bool]:
    """Apply the undecodable-bytes policy to one field decoded with 'surrogateescape'.

    Returns the text and whether it needed replacement. With errors="strict" an undecodable
    byte is an InputError naming the record; with "replace" it becomes U+FFFD.
    """
    match = _SURROGATES.search(text)
    if match is None:
        return text, False
    if errors == "strict":
        byte = ord(match.group()) - 0xDC00
        raise InputError(
            path,
            record,
            f"byte 0x{byte:02x} at character {match.start()} is not valid in the declared "
            "encoding (set target.encoding, or target.encoding_errors: replace)",
        )
    return _SURROGATES.sub("\ufffd", text), True
