"""What a study's resumable state belongs to, and why a run did not resume it.

A study's state lives under `studies/<name>/<key>/`; the key is a digest of what changes its
results and nothing else:

* `study`: the parsed study file (so a comment or the order of keys changes nothing), less
  what only says how to run it (`max_concurrent`, `max_failures`, `resources`);
* `members`: the sections members are built from (encoder, head, train_target), less the
  device and where the stage-1 model lies;
* `corpus`: a digest of the stage-2 corpus files; `stage1`: of the stage-1 model;
* `code`: of the modelling, training and sweep code.

The components are written beside the state (`manifest.json`) and the last key a study ran
under is kept in `studies/<name>/latest.json`: a run under another key says in its log which
components changed, with the values that differ.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from icdtransfer.config import EncoderConfig, HeadConfig, TrainTargetConfig
from icdtransfer.sweep.study import Study

RUNTIME_KEYS = ("max_concurrent", "max_failures", "resources")  # how to run, not what
NOT_MEMBER_DEFINING = ("device", "pretrained")  # train_target keys that change no result
DEFAULTED_HEAD_KEYS = {"pooling": "max"}  # issue 22: keyed only when not the default
DEFAULTED_TRAIN_KEYS = {"train_fraction": 1.0}


def member_sections(
    encoder: EncoderConfig, head: HeadConfig, train: TrainTargetConfig
) -> dict[str, Any]:
    """The sections a member is built from, as the keys see them. A head key added after
    members were stored is left out at its default (DEFAULTED_HEAD_KEYS), so those members'
    keys, and the studies' keys, stay what they were."""
    train_fields = dataclasses.asdict(train)
    for key in NOT_MEMBER_DEFINING:
        del train_fields[key]
    for key, default in DEFAULTED_TRAIN_KEYS.items():
        if train_fields[key] == default:
            del train_fields[key]
    head_fields = dataclasses.asdict(head)
    for key, default in DEFAULTED_HEAD_KEYS.items():
        if head_fields[key] == default:
            del head_fields[key]
    return {
        "encoder": dataclasses.asdict(encoder),
        "head": head_fields,
        "train": train_fields,
    }


def digest(value: Any, length: int = 12) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@dataclass
class Manifest:
    """The components of a study's key (see module docstring), and its run settings."""

    study: dict[str, Any]
    members: dict[str, Any]
    corpus: str
    stage1: str
    code: str
    runtime: dict[str, Any]  # not in the key: a resumed study keeps the settings it began with

    @classmethod
    def build(
        cls,
        study: Study,
        encoder: EncoderConfig,
        head: HeadConfig,
        train: TrainTargetConfig,
        corpus: str,
        stage1: str,
        code: str,
    ) -> Manifest:
        semantics = dataclasses.asdict(study)
        runtime = {k: semantics.pop(k) for k in RUNTIME_KEYS}
        return cls(semantics, member_sections(encoder, head, train), corpus, stage1, code, runtime)

    def keyed(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "runtime"}

    @property
    def key(self) -> str:
        return digest(self.keyed())

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def changes(self, before: Manifest, limit: int = 6) -> list[str]:
        """What differs from `before` in the keyed components, as `path: old -> new` lines
        (digests for the corpus, the stage-1 model and the code)."""
        return _diff(before.keyed(), self.keyed(), "")[:limit]

    def runtime_changes(self, before: Manifest) -> list[str]:
        return _diff(before.runtime, self.runtime, "")


def _diff(old: Any, new: Any, path: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            where = f"{path}.{key}" if path else str(key)
            out += _diff(old.get(key, "<absent>"), new.get(key, "<absent>"), where)
        return out
    if old == new:
        return []
    return [f"{path}: {_show(old)} -> {_show(new)}"]


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
