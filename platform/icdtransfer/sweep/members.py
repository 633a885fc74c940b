"""The member store: every ensemble member is trained once per storage root, across studies,
and ensembles of any size are assembled from stored member probabilities.

A member is keyed by (stage-2 config without ensemble_size, seed): never by the study, so two
studies that need the same member (same configuration and seed) share it. The store lives in
`<ray.storage_path>/members/`: `<key>/seed<seed>/` holds a member's files and, written last,
its marker `row.json` (its members.parquet row); `index.jsonl` lists the markers' rows
(index.py). It is one store per storage root: every study on the root, every driver and
every head that uses it reads and writes the same folders, claims and markers.

A study run reaches the store through a Ray actor pinned to its driver's node: trials on any
node claim a member before training it, send its files to the store when done, and read
stored probabilities back, so no shared filesystem is assumed. Claims are files in the
working folder (claims.py), so two studies running at once, each with its own driver and
actor, never train one member twice; a claim whose trial stopped heartbeating goes to the
next trial that asks, and a retried trial takes back its own claim at once.

Writes are safe against the failures a long sweep meets:

* a member folder is written in a temporary sibling, its marker last, and renamed into
  place under the index's lock; one already there is kept (the first member stored wins:
  trials may have used its probabilities); a folder without a marker (its writer was killed
  mid-write) is replaced;
* the index line follows the rename; a kill between the two loses nothing: the next store
  to open the root appends the line from the marker;
* with a URI storage_path (storage.py), a member's files go to the URI first and its marker
  last, never over a member the URI already holds; the index is merged with the URI's copy
  before it is pushed, and a store opening the URI also reads every marker there, so two
  heads pushing their working copies lose no member; a member the URI holds is fetched the
  first time it is needed.
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
from icdtransfer.data.atomic import clean_leftovers, temp_prefix
from icdtransfer.sweep.claims import ClaimFiles
from icdtransfer.sweep.faults import fault
from icdtransfer.sweep.index import (
    INDEX,
    MARKER,
    local_markers,
    locked_index,
    parse_index,
    read_index,  # noqa: F401  (re-exported: the index is read through this module)
    read_marker,
)
from icdtransfer.sweep.manifest import member_sections
from icdtransfer.sweep.storage import StateRoot, fsynced_append

log = logging.getLogger(__name__)

STORE = "members"  # under the storage root
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


class MemberStore:
    """Claims, files and the index of stored members (a Ray actor; see module docstring)."""

    def __init__(
        self, root: StateRoot, trial_log: str | None = None, stale_after_s: float = 60.0
    ) -> None:
        self.root = root
        self.folder = root.local / STORE
        self.folder.mkdir(parents=True, exist_ok=True)
        self.trial_log = trial_log  # relative to the root: the study's trial_starts.jsonl
        self.claims = ClaimFiles(self.folder, stale_after_s)
        self.index: dict[tuple[str, int], dict] = {}
        self.trained_now = 0
        self._open()

    # --- the index -----------------------------------------------------------------------

    def _open(self) -> None:
        """The index from every record of it: the working copy's file and markers, and with a
        URI the URI's index and markers; lines the file lacks are appended (and pushed)."""
        found = {k: read_marker(p) for k, p in local_markers(self.folder).items()}
        local = set(found)
        if self.root.uri is not None:
            text = self.root.read_text(f"{STORE}/{INDEX}") or ""
            remote = parse_index(self.folder / INDEX, text.encode(), warn=False)[0]
            for row in remote:
                found.setdefault((row["key"], row["seed"]), row)
            for rel in self.root.files(STORE):
                parts = rel.split("/")
                if len(parts) == 3 and parts[2] == MARKER and parts[1][4:].isdigit():
                    key = (parts[0], int(parts[1][4:]))
                    local.discard(key)
                    if found.get(key) is None:
                        found[key] = _row(self.root.read_text(f"{STORE}/{rel}"))
            for key, seed in sorted(local):  # stored here by a run lost before its upload
                self._push_member(key, seed)
        added = 0
        with locked_index(self.folder / INDEX) as (rows, writer):
            for row in rows:  # the first stored wins
                self.index.setdefault((row["key"], row["seed"]), row)
            for key, row in found.items():
                if row is not None and key not in self.index:
                    writer.write(row)
                    self.index[key] = row
                    added += 1
        if added:
            log.info("member index: %d line(s) restored from the members' markers", added)
        self._push_index()

    def _push_index(self) -> None:
        """Push the index, merged first with the URI's copy (another head's lines kept)."""
        if self.root.uri is None:
            return
        text = self.root.read_text(f"{STORE}/{INDEX}") or ""
        remote = parse_index(self.folder / INDEX, text.encode(), warn=False)[0]
        with locked_index(self.folder / INDEX) as (rows, writer):
            have = {(r["key"], r["seed"]) for r in rows}
            for row in remote:
                if (row["key"], row["seed"]) not in have:
                    writer.write(row)
                    have.add((row["key"], row["seed"]))
                    self.index.setdefault((row["key"], row["seed"]), row)
            writer.handle.flush()
            self.root.push(f"{STORE}/{INDEX}")  # under the lock: no append is half copied

    def _stored(self, key: str, seed: int) -> bool:
        """Whether the member is stored (on this node, or fetched from the URI now): as the
        index says, or as a marker that another process (or head) wrote says."""
        if (key, seed) not in self.index:
            marker = self.folder / key / f"seed{seed}" / MARKER
            row = read_marker(marker)
            if row is None and self.root.uri is not None:
                row = _row(self.root.read_text(f"{member_rel(key, seed)}/{MARKER}"))
            if row is None:
                return False
            self.index[(key, seed)] = row
        return self._local(key, seed)

    def _local(self, key: str, seed: int) -> bool:
        """Whether a member the index lists is on this node, fetching it from the URI if not;
        a member neither has is forgotten (and trained again)."""
        folder = self.folder / key / f"seed{seed}"
        if _whole(folder) or (self.root.pull(member_rel(key, seed)) and _whole(folder)):
            return True
        log.warning("member %s seed %d is indexed but not stored: trained again", key, seed)
        del self.index[(key, seed)]
        return False

    # --- claims --------------------------------------------------------------------------

    def claim(self, key: str, seed: int, trial_id: str) -> str:
        """'done' (stored), 'yours' (train it), or 'busy' (another live trial trains it)."""
        if self._stored(key, seed):
            return "done"
        if not self.claims.take(key, seed, trial_id):
            return "busy"
        if self._stored(key, seed):  # stored by the claim's last holder, who then let go
            self.claims.release(key, seed, trial_id)
            return "done"
        return "yours"

    def heartbeat(self, key: str, seed: int, trial_id: str) -> None:
        self.claims.heartbeat(key, seed, trial_id)

    def release(self, key: str, seed: int, trial_id: str) -> None:
        self.claims.release(key, seed, trial_id)

    # --- writes --------------------------------------------------------------------------

    def put(self, key: str, seed: int, files: dict[str, bytes], row: dict) -> bool:
        """Store a trained member; returns False when it was stored already (by another trial
        or another run), in which case the stored one is kept and this one dropped (module
        docstring: files, then the marker, the rename and the index line)."""
        row = {**row, "key": key, "seed": seed}
        final = self.folder / key / f"seed{seed}"
        stored = False
        try:
            if self._stored(key, seed):
                log.warning("member %s seed %d was stored meanwhile: keeping it", key, seed)
            else:
                stored = self._write(final, files, row)
            fault("member_before_upload")
            self._push_member(key, seed)
            fault("member_before_index_push")
            self._push_index()
        finally:
            self.claims.release(key, seed)
        if stored:
            self.trained_now += 1
        return stored

    def _write(self, final: Path, files: dict[str, bytes], row: dict) -> bool:
        key, seed = row["key"], row["seed"]
        final.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(final)
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(final), dir=final.parent))
        try:
            for name, data in [*files.items(), (MARKER, json.dumps(row).encode())]:
                with open(tmp / name, "wb") as handle:  # the marker last
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
            fault("member_files_written")
            with locked_index(self.folder / INDEX) as (rows, writer):
                listed = {(r["key"], r["seed"]): r for r in rows}
                there = read_marker(final / MARKER)
                if (key, seed) in listed or there is not None:
                    log.warning("member %s seed %d was stored meanwhile: keeping it", key, seed)
                    self.index[(key, seed)] = listed.get((key, seed)) or there
                    if (key, seed) not in listed:
                        writer.write(self.index[(key, seed)])
                    return False
                if final.exists():
                    log.warning("%s has no marker (its writer was killed): replacing it", final)
                    shutil.rmtree(final)
                os.rename(tmp, final)
                fsync_folder(final.parent)
                fault("member_between_folder_and_index")
                writer.write(row)
                self.index[(key, seed)] = row
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return True

    def _push_member(self, key: str, seed: int) -> None:
        """The member's files to the URI, its marker last; nothing when the URI has the marker
        already (a stored member is never overwritten)."""
        rel = member_rel(key, seed)
        if self.root.uri is None or self.root.exists(f"{rel}/{MARKER}"):
            return
        folder = self.folder / key / f"seed{seed}"
        for path in sorted(folder.iterdir()):
            if path.name != MARKER and not path.name.startswith("."):
                self.root.push(f"{rel}/{path.name}")
        fault("member_before_marker_upload")
        self.root.push(f"{rel}/{MARKER}")

    # --- reads ---------------------------------------------------------------------------

    def probabilities(self, key: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return read_probs(self.folder / key / f"seed{seed}")

    def info(self, key: str, seed: int) -> MemberInfo:
        """A stored member's member.json (its training outcome, validation curve included)."""
        return MemberInfo.read(self.folder / key / f"seed{seed}")

    def log_start(
        self,
        trial_id: str,
        run_id: str,
        node: str,
        resumed: dict | None,
        trial_log: str | None = None,
    ) -> None:
        """One line per trial start, so a resumed sweep can show what ran twice, and where a
        restarted trial picked up (`resumed`: the member and epoch of its Tune checkpoint), in
        the study's trial log (`trial_log`, relative to the root)."""
        trial_log = trial_log or self.trial_log
        if trial_log is None:
            return
        line = {"trial_id": trial_id, "run_id": run_id, "node": node, "time": time.time()}
        with fsynced_append(self.root.local / trial_log) as handle:
            handle.write(json.dumps({**line, "resumed": resumed}) + "\n")
        self.root.push(trial_log)

    def rows(self, wanted: list[tuple[str, int]] | None = None) -> list[dict]:
        """Index rows: all, or those of `wanted` (key, seed) pairs that are stored."""
        if wanted is None:
            return list(self.index.values())
        return [self.index[k] for k in wanted if self._stored(*k)]

    def counts(self) -> dict[str, int]:
        return {"stored": len(self.index), "trained_this_run": self.trained_now}


def _row(text: str | None) -> dict | None:
    try:
        row = json.loads(text) if text else None
    except ValueError:
        return None
    return row if isinstance(row, dict) and "key" in row and "seed" in row else None


def _whole(folder: Path) -> bool:
    """A stored member's folder: its marker, or (stored before markers) its metrics."""
    return (folder / MARKER).exists() or (folder / METRICS_FILE).exists()


def read_member_files(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in MEMBER_FILES if (folder / name).exists()}


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
