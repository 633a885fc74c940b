"""Claims on members being trained, as files, so every process that shares a storage root's
working folder sees them: two studies running at once (two drivers, each with a store
actor of its own, or one actor in a shared cluster) never train the same member twice.

A claim is `<store>/.claims/<key>.seed<seed>`, holding the claiming trial's id; its
modification time is the holder's last heartbeat. A claim whose holder stopped heartbeating
(the trial crashed, its node or its driver died) for `stale_after_s` goes to the next trial
that asks, and a retried trial takes back its own claim at once. Every decision happens
under one lock file, so two processes never both take a claim.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

FOLDER = ".claims"


class ClaimFiles:
    def __init__(self, store: Path, stale_after_s: float) -> None:
        self.folder = store / FOLDER
        self.folder.mkdir(parents=True, exist_ok=True)
        self.stale_after_s = stale_after_s

    def _path(self, key: str, seed: int) -> Path:
        return self.folder / f"{key}.seed{seed}"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.folder / "lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def holder(self, key: str, seed: int) -> tuple[str, float] | None:
        """(trial id, seconds since its last heartbeat) of a claim, or None."""
        path = self._path(key, seed)
        try:
            return path.read_text(encoding="utf-8"), time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return None

    def take(self, key: str, seed: int, trial_id: str) -> bool:
        """Claim the member for `trial_id`: free, its own, or stale. False: another live trial
        holds it."""
        with self._locked():
            held = self.holder(key, seed)
            if held is not None and held[0] != trial_id and held[1] <= self.stale_after_s:
                return False
            path = self._path(key, seed)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(trial_id, encoding="utf-8")
            os.replace(tmp, path)
            return True

    def heartbeat(self, key: str, seed: int, trial_id: str) -> None:
        held = self.holder(key, seed)
        if held is not None and held[0] == trial_id:
            with contextlib.suppress(FileNotFoundError):
                os.utime(self._path(key, seed))

    def release(self, key: str, seed: int, trial_id: str | None = None) -> None:
        """Drop the claim (only `trial_id`'s, when given)."""
        with self._locked():
            held = self.holder(key, seed)
            if held is not None and (trial_id is None or held[0] == trial_id):
                self._path(key, seed).unlink(missing_ok=True)
