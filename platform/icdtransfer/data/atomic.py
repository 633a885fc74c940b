"""Outputs appear whole or not at all: write into a temporary sibling, then rename.

A temporary sibling is named for its output and its writer: `.<name>.tmp-<host>-<pid>-<random>`
(and `.<name>.old-<host>-<pid>` for the output being replaced), so that when a writer is
killed, the next writer of the same output can tell its leftovers (a full corpus, say) from a
sibling another live process is still building, and remove them. The repository's .gitignore
ignores these names until then.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder that replaces `final` only if the block succeeds.

    On any exception the temporary folder is removed and `final` is left as it was. Files in
    `final` that the block did not write (DVC's .gitignore, a user's notes) are carried over.
    Leftovers of a killed earlier writer of `final` are cleaned first.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(final)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final), dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = old_sibling(final)
    if final.exists():
        for entry in final.iterdir():
            if not (tmp / entry.name).exists():
                os.replace(entry, tmp / entry.name)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(final: str | Path, mode: str = "w", durable: bool = False) -> Iterator:
    """Open a temporary sibling of `final` for writing; rename it over `final` on success.

    `durable`: the data is fsynced before the rename and the folder after it, so that after a
    power loss `final` is the old file or the new one, never an empty or partial one.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(final)
    fd, name = tempfile.mkstemp(prefix=temp_prefix(final), dir=final.parent)
    encoding = None if "b" in mode else "utf-8"
    try:
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(name, final)
        if durable:
            folder = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise


def clean_leftovers(final: str | Path) -> None:
    """Remove the temporary siblings of `final` whose writer (a process on this host) is gone.

    A writer killed between its two renames leaves `final` missing and its finished folder
    beside the old one (the `.old` rename happens only after the block succeeded): the
    finished folder becomes `final`. Siblings of live processes and of other hosts (a shared
    filesystem) are left alone.
    """
    final = Path(final)
    if not final.parent.is_dir():
        return
    stale: dict[str, list[tuple[int, Path]]] = {"tmp": [], "old": []}
    pattern = re.compile(
        rf"\.{re.escape(final.name)}\.(?P<kind>tmp|old)-{re.escape(socket.gethostname())}"
        r"-(?P<pid>\d+)(?:-[a-z0-9_]+)?"
    )
    for entry in final.parent.iterdir():
        match = pattern.fullmatch(entry.name)
        if match and not _alive(int(match["pid"])):
            stale[match["kind"]].append((int(match["pid"]), entry))
    finished = {pid for pid, _ in stale["old"]}
    for pid, entry in stale["tmp"]:
        if pid in finished and not final.exists() and entry.is_dir():
            log.warning("%s: restoring the output killed writer %d had finished", final, pid)
            os.replace(entry, final)
            continue
        _remove(entry, pid)
    for pid, entry in stale["old"]:
        if not final.exists():
            log.warning("%s: restoring the previous output (writer pid %d was killed)", final, pid)
            os.replace(entry, final)
            continue
        _remove(entry, pid)


def _remove(entry: Path, pid: int) -> None:
    log.warning("removing %s, left by a writer that was killed (pid %d)", entry, pid)
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()


def _writer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def temp_prefix(final: Path) -> str:
    """The name prefix of this process' temporary siblings of `final` (for mkdtemp/mkstemp)."""
    return f".{final.name}.tmp-{_writer()}-"


def old_sibling(final: Path) -> Path:
    """Where this process moves `final` while replacing it (removed once replaced)."""
    return final.with_name(f".{final.name}.old-{_writer()}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
