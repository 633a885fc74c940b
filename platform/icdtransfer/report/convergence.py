"""Which members converged, over every study in results/ (each study's members.parquet).

A member converged when early stopping fired (docs/DESIGN.md section 4); one the epoch cap
stopped first did not, and the dashboard lists it in a warning at the top. A member that
several studies use (the member store shares them) is listed once, with every study."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

MEMBERS = "members.parquet"
SHOWN = ("studies", "variant", "config", "seed", "epochs", "best_epoch", "key")


@dataclass
class Convergence:
    """One row per stored member (key, seed) over all studies."""

    members: pd.DataFrame  # key, seed, studies, variant, config, converged (bool or NA), ...

    @property
    def unconverged(self) -> pd.DataFrame:
        return self.members[self.members["converged"].eq(False)]

    @property
    def unrecorded(self) -> int:
        """Members written before convergence was recorded."""
        return int(self.members["converged"].isna().sum())

    def rule(self) -> str:
        """The rules the members trained by, e.g. "patience 3 from epoch 5"."""
        frame = self.members.dropna(subset=["patience"])
        rules = sorted(
            {
                f"patience {int(p)}" + (f" from epoch {int(m)}" if m > 1 else "")
                for p, m in zip(frame["patience"], frame["min_epochs"], strict=True)
            }
        )
        return "; ".join(rules)

    def listing(self) -> pd.DataFrame:
        """The unconverged members as the dashboard lists them."""
        frame = self.unconverged.copy()
        frame["epochs"] = [
            f"{int(r)} / {int(c)}"
            for r, c in zip(frame["epochs_run"], frame["epoch_cap"], strict=True)
        ]
        return frame[list(SHOWN)].reset_index(drop=True)


def study_convergence(results: Path) -> Convergence:
    """Every study's members under `results` (the folders holding a members.parquet)."""
    frames = []
    for folder in sorted(p for p in results.iterdir() if (p / MEMBERS).exists()):
        frame = pd.read_parquet(folder / MEMBERS)
        if frame.empty:
            continue
        frame["studies"] = folder.name
        frames.append(frame)
    if not frames:
        return Convergence(pd.DataFrame(columns=["key", "seed", "converged", *SHOWN]))
    frame = pd.concat(frames, ignore_index=True)
    for column in ("converged", "epochs_run", "epoch_cap", "best_epoch", "patience"):
        if column not in frame:
            frame[column] = pd.NA  # members.parquet written before convergence was recorded
    if "min_epochs" not in frame:
        frame["min_epochs"] = 1
    studies = frame.groupby(["key", "seed"], sort=False)["studies"].agg(", ".join)
    frame = frame.drop_duplicates(["key", "seed"]).drop(columns="studies")
    frame = frame.join(studies, on=["key", "seed"])
    frame["config"] = [
        f"adaptation {a}, word dropout {w:g}, lr {lr:g}"
        for a, w, lr in zip(
            frame["adaptation_size"], frame["word_dropout"], frame["learning_rate"], strict=True
        )
    ]
    frame["converged"] = frame["converged"].astype("boolean")
    return Convergence(
        frame.sort_values(["studies", "variant", "key", "seed"]).reset_index(drop=True)
    )
