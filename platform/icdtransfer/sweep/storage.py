"""Where a sweep's state lives: `ray.storage_path`, a local folder or a URI, and the head's
working copy of it.

Ray Tune writes its experiment (and the trials' checkpoints) to the storage itself, through
pyarrow filesystems, so a URI such as `s3://bucket/prefix` works there as it is. The rest of
a study's state is written by ordinary file code on the head: the member store (folders,
an append-only index), Optuna's SQLite database, the trial log, the manifest and the lock. A
SQLite file and an appended index cannot live on S3, so they live in a head-local working
folder:

* a local `storage_path` is its own working folder: nothing is copied;
* with a URI the working folder is `<ray.state_dir>/<the URI as a folder name>`: what a run
  needs is restored from the URI at start (`pull`), and every change is pushed back (`push`)
  as it happens, so a new head (the old one lost) resumes from the URI alone.

Paths under the storage are relative POSIX paths (`members/index.jsonl`); `uri` keeps any
query string (`?endpoint_override=...`) out of them, so `s3://b/ray?x=y` + `studies/a` is
`b/ray/studies/a` on the filesystem, never the `s3:/b/ray/x` that `Path(uri) / name` gives.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icdtransfer.data.atomic import clean_leftovers, old_sibling, temp_prefix


def is_uri(path: str) -> bool:
    return "://" in path


@dataclass
class StateRoot:
    """A storage root and its head-local working folder (see module docstring)."""

    local: Path  # the working folder (the storage itself when `uri` is None)
    uri: str | None = None
    _fs: Any = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def open(cls, storage_path: str, state_dir: str) -> StateRoot:
        if not is_uri(storage_path):
            return cls(Path(storage_path).expanduser().resolve())
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", storage_path.split("?", 1)[0]).strip("-")
        return cls(Path(state_dir).expanduser().resolve() / slug, storage_path)

    def __getstate__(self) -> dict:  # sent to the store actor: the filesystem is reopened there
        return {"local": self.local, "uri": self.uri}

    def __setstate__(self, state: dict) -> None:
        self.local, self.uri, self._fs = state["local"], state["uri"], None

    # --- the remote side -----------------------------------------------------------------

    def filesystem(self) -> tuple[Any, str]:
        """(pyarrow filesystem, root path on it) of the URI."""
        import pyarrow.fs as pafs

        assert self.uri is not None
        if self._fs is None:
            self._fs = pafs.FileSystem.from_uri(self.uri)
        return self._fs

    def remote(self, rel: str) -> str:
        """`rel`'s path on the URI's filesystem."""
        return f"{self.filesystem()[1].rstrip('/')}/{rel}".rstrip("/")

    def where(self, rel: str = "") -> str:
        """Where `rel` lives, as a user would name it (a URI without its query, or a path)."""
        if self.uri is None:
            return str(self.local / rel)
        scheme = self.uri.split("://", 1)[0]
        return f"{scheme}://{self.remote(rel)}"

    def tune_storage(self, rel: str) -> tuple[str, Any]:
        """Ray's (storage_path, storage_filesystem) for a Tune experiment under `rel`."""
        if self.uri is None:
            return str(self.local / rel), None
        return self.remote(rel), self.filesystem()[0]

    # --- copies ----------------------------------------------------------------------------

    def pull(self, rel: str) -> bool:
        """Replace the working copy of `rel` (a file or a folder) by the URI's, if the URI has
        it; returns whether it did. A local storage_path: whether `rel` exists."""
        target = self.local / rel
        if self.uri is None:
            return target.exists()
        import pyarrow.fs as pafs

        fs, _ = self.filesystem()
        info = fs.get_file_info(self.remote(rel))
        if info.type == pafs.FileType.NotFound:
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(target)
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target), dir=target.parent))
        try:
            if info.type == pafs.FileType.Directory:
                base = self.remote(rel)
                (tmp / "x").mkdir()
                for entry in fs.get_file_info(pafs.FileSelector(base, recursive=True)):
                    if entry.type == pafs.FileType.File:
                        self._download(entry.path, tmp / "x" / entry.path[len(base) + 1 :])
            else:
                self._download(self.remote(rel), tmp / "x")
            _replace(tmp / "x", target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return True

    def _download(self, remote: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        with self.filesystem()[0].open_input_stream(remote) as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst)

    def push(self, rel: str, source: Path | None = None) -> None:
        """Copy the working copy of `rel` (a file or a folder; or `source`, a snapshot of it)
        to the URI; nothing to do for a local storage_path. A failure raises: state that did
        not reach the URI is not safe."""
        if self.uri is None:
            return
        import pyarrow.fs as pafs

        fs, _ = self.filesystem()
        source = source or self.local / rel
        fs.create_dir(self.remote(rel).rsplit("/", 1)[0], recursive=True)
        pafs.copy_files(
            str(source),
            self.remote(rel),
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=fs,
            # one thread: pyarrow's threaded uploads to S3 can hang (apache/arrow#32372;
            # Ray turns them off for its own uploads for the same reason)
            use_threads=False,
        )

    def delete(self, rel: str) -> None:
        """Remove the file `rel` from the URI (nothing for a local storage_path)."""
        if self.uri is None or not self.exists(rel):
            return
        self.filesystem()[0].delete_file(self.remote(rel))

    def files(self, rel: str) -> list[str]:
        """The files under `rel` on the authoritative copy, as paths relative to `rel`."""
        if self.uri is None:
            base = self.local / rel
            return [p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()]
        import pyarrow.fs as pafs

        fs, _ = self.filesystem()
        base = self.remote(rel)
        if fs.get_file_info(base).type != pafs.FileType.Directory:
            return []
        selector = pafs.FileSelector(base, recursive=True)
        return [
            e.path[len(base) + 1 :]
            for e in fs.get_file_info(selector)
            if e.type == pafs.FileType.File
        ]

    def read_text(self, rel: str) -> str | None:
        """`rel` as text from the authoritative copy (the URI, else the folder); None if absent.
        Reads only: `--status` uses it without touching the working folder."""
        if self.uri is None:
            path = self.local / rel
            return path.read_text(encoding="utf-8") if path.is_file() else None
        import pyarrow.fs as pafs

        fs, _ = self.filesystem()
        if fs.get_file_info(self.remote(rel)).type != pafs.FileType.File:
            return None
        with fs.open_input_stream(self.remote(rel)) as handle:
            return handle.read().decode("utf-8")

    def exists(self, rel: str) -> bool:
        """Whether the authoritative copy has `rel`."""
        if self.uri is None:
            return (self.local / rel).exists()
        import pyarrow.fs as pafs

        return self.filesystem()[0].get_file_info(self.remote(rel)).type != pafs.FileType.NotFound


def _replace(source: Path, target: Path) -> None:
    """Move `source` into `target`'s place, replacing a file or a folder there."""
    if target.is_dir() and not target.is_symlink():
        old = old_sibling(target)
        os.replace(target, old)
        os.replace(source, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(source, target)


@contextlib.contextmanager
def fsynced_append(path: Path) -> Iterator[Any]:
    """Open `path` for appending text under an exclusive lock (another process appending to
    the same file waits), and fsync it before the lock is released: a line that was appended
    survives a power loss, and two writers never interleave."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
