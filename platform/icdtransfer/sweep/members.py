"""The member store: every ensemble member is trained at most once per sweep, and ensembles of
any size are assembled from stored member probabilities.

A member is keyed by (stage-2 config without ensemble_size, seed). The store is one Ray actor
pinned to the driver's node: trials on any node claim a member before training it, send its
files to the store when done, and read stored probabilities back, so no shared filesystem is
assumed. A claim is held by a trial that heartbeats; a claim whose trial stopped heartbeating
(the trial crashed, its node died) goes to the next trial that asks, and a retried trial may
take back its own claim at once. The store's folder lives under the sweep's resumable state,
so a resumed sweep finds every member trained before the interruption.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from icdtransfer.artifacts import MEMBER_FILES, METRICS_FILE, read_probs
from icdtransfer.config import EncoderConfig, HeadConfig, TrainTargetConfig

INDEX = "members.jsonl"
TRIAL_LOG = "trial_starts.jsonl"


def member_key(
    encoder: EncoderConfig,
    head: HeadConfig,
    train: TrainTargetConfig,
    variant: str,
    corpus_stats: dict,
    pretrained_digest: str | None,
    code: str,
) -> str:
    """Everything that defines a member except its seed (and never the ensemble size); the
    stage-1 model counts by its digest, not by where it lies."""
    train_fields = {k: v for k, v in dataclasses.asdict(train).items() if k != "pretrained"}
    text = json.dumps(
        [
            dataclasses.asdict(encoder),
            dataclasses.asdict(head),
            train_fields,
            variant,
            corpus_stats,
            pretrained_digest if variant != "scratch" else None,
            code,
        ],
        sort_keys=True,
        default=str,
    )
    return f"{variant}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


class MemberStore:
    """Claims, files and the index of trained members (a Ray actor; see module docstring)."""

    def __init__(self, root: str, stale_after_s: float = 60.0) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.stale_after_s = stale_after_s
        self.claims: dict[tuple[str, int], tuple[str, float]] = {}
        self.index: dict[tuple[str, int], dict] = {}
        self.trained_now = 0
        if (self.root / INDEX).exists():
            for line in (self.root / INDEX).read_text().splitlines():
                row = json.loads(line)
                if (self.root / row["key"] / f"seed{row['seed']}" / METRICS_FILE).exists():
                    self.index[(row["key"], row["seed"])] = row

    def claim(self, key: str, seed: int, trial_id: str) -> str:
        """'done' (stored), 'yours' (train it), or 'busy' (another live trial trains it)."""
        if (key, seed) in self.index:
            return "done"
        held = self.claims.get((key, seed))
        now = time.monotonic()
        if held is None or held[0] == trial_id or now - held[1] > self.stale_after_s:
            self.claims[(key, seed)] = (trial_id, now)
            return "yours"
        return "busy"

    def heartbeat(self, key: str, seed: int, trial_id: str) -> None:
        if self.claims.get((key, seed), ("",))[0] == trial_id:
            self.claims[(key, seed)] = (trial_id, time.monotonic())

    def release(self, key: str, seed: int, trial_id: str) -> None:
        if self.claims.get((key, seed), ("",))[0] == trial_id:
            del self.claims[(key, seed)]

    def put(self, key: str, seed: int, files: dict[str, bytes], row: dict) -> None:
        """Store a trained member's files (written whole, then renamed into place)."""
        final = self.root / key / f"seed{seed}"
        tmp = final.with_name(f".seed{seed}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        row = {**row, "key": key, "seed": seed}
        with open(self.root / INDEX, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        self.index[(key, seed)] = row
        self.claims.pop((key, seed), None)
        self.trained_now += 1

    def probabilities(self, key: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
        return read_probs(self.root / key / f"seed{seed}")

    def log_start(self, trial_id: str, run_id: str, node: str) -> None:
        """One line per trial start, so a resumed sweep can show what ran twice."""
        with open(self.root / TRIAL_LOG, "a", encoding="utf-8") as handle:
            handle.write(
                json.dumps(
                    {"trial_id": trial_id, "run_id": run_id, "node": node, "time": time.time()}
                )
                + "\n"
            )

    def rows(self) -> list[dict]:
        return list(self.index.values())

    def counts(self) -> dict[str, int]:
        return {"stored": len(self.index), "trained_this_run": self.trained_now}


def read_member_files(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in MEMBER_FILES if (folder / name).exists()}
