"""One run of a study at a time: an exclusive lock held for the whole run.

Two runs of one study (a resume started while the first still runs in tmux, say) would write
one Tune experiment and append to one member index at once. The lock is a file in the head's
working folder, locked with flock(2): the kernel releases it when the holder exits, however
it exits, so a killed run never leaves a stale lock. The holder writes its pid, host and start
time into the file, and a second run names them in its error.

The lock covers runs on one machine (flock is per kernel): two heads pointed at one S3 URI
are not excluded from each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from icdtransfer.sweep import StudyBusy


def holder(path: Path) -> dict | None:
    """Who holds the lock at `path`, or None when nobody does (without taking it)."""
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextlib.contextmanager
def study_lock(path: Path, study: str) -> Iterator[None]:
    """Hold the lock of `study` at `path` for the block; raise StudyBusy at once when another
    process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by Ray's processes
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StudyBusy(describe(study, _read(fd), path)) from None
        os.ftruncate(fd, 0)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        os.fsync(fd)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def describe(study: str, info: dict | None, path: Path) -> str:
    if not info:
        who = "another process (it has not written its name yet)"
    else:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"]))
        who = f"pid {info['pid']} on {info['host']}, started {started}"
    return f"study {study} is already running: {who} holds {path}"


def _read(fd: int) -> dict | None:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "null")
    except ValueError:
        return None
