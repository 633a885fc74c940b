"""The member store: every ensemble member is trained once per storage root, across studies,
and ensembles of any size are assembled from stored member probabilities.

A member is keyed by (stage-2 config without ensemble_size, seed): never by the study, so two
studies that need the same member (same configuration and seed) share it. The store lives in
`<ray.storage_path>/members/`: `<key>/seed<seed>/` holds a member's files, `index.jsonl` one
line per stored member (its members.parquet row).

The store is a Ray actor pinned to the driver's node, one per study run: trials on any node
claim a member before training it, send its files to the store when done, and read stored
probabilities back, so no shared filesystem is assumed. A claim is held by a trial that
heartbeats; a claim whose trial stopped heartbeating (the trial crashed, its node died) goes
to the next trial that asks, and a retried trial may take back its own claim at once.

Writes are safe against the failures a long sweep meets:

* a member folder is written in a temporary sibling and renamed into place; one already
  there is kept (the first member stored wins: trials may have used its probabilities), so
  two runs storing the same member never race a removal against a rename;
* index lines are appended under an exclusive lock and fsynced; a torn last line (a full
  disk, a power loss) is dropped with a warning at start, and a damaged line before the last
  is an error naming the file and the line;
* with a URI storage_path (storage.py), each stored member and the index are pushed to the
  URI, and a member the index lists is fetched from the URI the first time it is needed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from icdtransfer.artifacts import MEMBER_FILES, METRICS_FILE, MemberInfo, read_probs
from icdtransfer.config import EncoderConfig, HeadConfig, TrainTargetConfig
from icdtransfer.data.atomic import atomic_file, clean_leftovers, temp_prefix
from icdtransfer.data.errors import InputError
from icdtransfer.sweep.manifest import member_sections
from icdtransfer.sweep.storage import StateRoot, fsynced_append

log = logging.getLogger(__name__)

STORE = "members"  # under the storage root
INDEX = "index.jsonl"
TRIAL_LOG = "trial_starts.jsonl"


def member_key(
    encoder: EncoderConfig,
    head: HeadConfig,
    train: TrainTargetConfig,
    variant: str,
    corpus_digest: str,
    pretrained_digest: str | None,
    code: str,
) -> str:
    """Everything that defines a member except its seed (and never the ensemble size or the
    study); the stage-1 model counts by its digest, not by where it lies, and only for the
    variants that start from it."""
    text = json.dumps(
        [
            member_sections(encoder, head, train),
            variant,
            corpus_digest,
            pretrained_digest if variant != "scratch" else None,
            code,
        ],
        sort_keys=True,
        default=str,
    )
    return f"{variant}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def member_rel(key: str, seed: int) -> str:
    """A stored member's folder, relative to the storage root."""
    return f"{STORE}/{key}/seed{seed}"


def read_index(path: Path, repair: bool = True) -> list[dict]:
    """The index's rows. A last line that does not parse (torn by a crash mid-append) is
    dropped with a warning and, with `repair`, cut from the file, so the next append starts
    on a line of its own; an unparsable line before the last is an InputError naming the
    file and the line."""
    if not path.exists():
        return []
    data = path.read_bytes()
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
            log.warning(
                "%s: line %d is cut short (a crash while it was written): dropped; its member "
                "is trained again if a trial needs it",
                path,
                number,
            )
            break
        rows.append(row)
        kept += len(line) + 1
    if repair and kept != len(data):  # a torn tail, or no final newline: rewrite it whole
        with atomic_file(path, "w", durable=True) as handle:
            handle.writelines(json.dumps(r) + "\n" for r in rows)
    return rows


class MemberStore:
    """Claims, files and the index of stored members (a Ray actor; see module docstring)."""

    def __init__(
        self, root: StateRoot, trial_log: str | None = None, stale_after_s: float = 60.0
    ) -> None:
        self.root = root
        self.folder = root.local / STORE
        self.folder.mkdir(parents=True, exist_ok=True)
        self.trial_log = trial_log  # relative to the root: the study's trial_starts.jsonl
        self.stale_after_s = stale_after_s
        self.claims: dict[tuple[str, int], tuple[str, float]] = {}
        self.index: dict[tuple[str, int], dict] = {}
        self.trained_now = 0
        root.pull(f"{STORE}/{INDEX}")
        for row in read_index(self.folder / INDEX):
            self.index.setdefault((row["key"], row["seed"]), row)  # the first stored wins

    def claim(self, key: str, seed: int, trial_id: str) -> str:
        """'done' (stored), 'yours' (train it), or 'busy' (another live trial trains it)."""
        if (key, seed) in self.index and self._local(key, seed):
            return "done"
        held = self.claims.get((key, seed))
        now = time.monotonic()
        if held is None or held[0] == trial_id or now - held[1] > self.stale_after_s:
            self.claims[(key, seed)] = (trial_id, now)
            return "yours"
        return "busy"

    def _local(self, key: str, seed: int) -> bool:
        """Whether a member the index lists is on this node, fetching it from the URI if not;
        a member neither has is forgotten (and trained again)."""
        folder = self.folder / key / f"seed{seed}"
        if (folder / METRICS_FILE).exists() or (
            self.root.pull(member_rel(key, seed)) and (folder / METRICS_FILE).exists()
        ):
            return True
        log.warning("member %s seed %d is indexed but not stored: trained again", key, seed)
        del self.index[(key, seed)]
        return False

    def heartbeat(self, key: str, seed: int, trial_id: str) -> None:
        if self.claims.get((key, seed), ("",))[0] == trial_id:
            self.claims[(key, seed)] = (trial_id, time.monotonic())

    def release(self, key: str, seed: int, trial_id: str) -> None:
        if self.claims.get((key, seed), ("",))[0] == trial_id:
            del self.claims[(key, seed)]

    def put(self, key: str, seed: int, files: dict[str, bytes], row: dict) -> bool:
        """Store a trained member; returns False when it was stored already (by another trial
        or another run), in which case the stored one is kept and this one dropped.

        The files go to a temporary sibling first (fsynced); the rename into place and the
        index line happen under the index's lock, after re-reading the index, so a member
        folder is indexed exactly once and never replaced. A folder without an index line is
        what a writer killed between the two left: it is replaced."""
        self.claims.pop((key, seed), None)
        if (key, seed) in self.index and self._local(key, seed):
            return False
        final = self.folder / key / f"seed{seed}"
        final.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(final)
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final), dir=final.parent))
        row = {**row, "key": key, "seed": seed}
        try:
            for name, data in files.items():
                with open(tmp / name, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
            with fsynced_append(self.folder / INDEX) as index:
                stored = {(r["key"], r["seed"]): r for r in read_index(self.folder / INDEX, False)}
                if (key, seed) in stored:
                    log.warning("member %s seed %d was stored meanwhile: keeping it", key, seed)
                    self.index[(key, seed)] = stored[(key, seed)]
                    return False
                if final.exists():
                    log.warning("%s has no index line (its writer was killed): replacing it", final)
                    shutil.rmtree(final)
                os.rename(tmp, final)
                fsync_folder(final.parent)
                index.write(json.dumps(row) + "\n")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.root.push(member_rel(key, seed))
        self.root.push(f"{STORE}/{INDEX}")
        self.index[(key, seed)] = row
        self.trained_now += 1
        return True

    def probabilities(self, key: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return read_probs(self.folder / key / f"seed{seed}")

    def info(self, key: str, seed: int) -> MemberInfo:
        """A stored member's member.json (its training outcome, validation curve included)."""
        return MemberInfo.read(self.folder / key / f"seed{seed}")

    def log_start(self, trial_id: str, run_id: str, node: str, resumed: dict | None) -> None:
        """One line per trial start, so a resumed sweep can show what ran twice, and where a
        restarted trial picked up (`resumed`: the member and epoch of its Tune checkpoint)."""
        if self.trial_log is None:
            return
        line = {"trial_id": trial_id, "run_id": run_id, "node": node, "time": time.time()}
        with fsynced_append(self.root.local / self.trial_log) as handle:
            handle.write(json.dumps({**line, "resumed": resumed}) + "\n")
        self.root.push(self.trial_log)

    def rows(self, wanted: list[tuple[str, int]] | None = None) -> list[dict]:
        """Index rows: all, or those of `wanted` (key, seed) pairs that are stored."""
        if wanted is None:
            return list(self.index.values())
        return [self.index[k] for k in wanted if k in self.index and self._local(*k)]

    def counts(self) -> dict[str, int]:
        return {"stored": len(self.index), "trained_this_run": self.trained_now}


def read_member_files(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in MEMBER_FILES if (folder / name).exists()}


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
