"""Do two runs of a study reach the same verdicts? (docs/DESIGN.md section 5, replication.)

    .venv/bin/python bench/compare_verdicts.py RUN_A/reports/tables/verdicts.csv \\
        RUN_B/reports/tables/verdicts.csv

Prints, over every all-seeds comparison and metric both runs have (threshold tuned on
validation and fixed), how many verdicts agree and how many are opposite (better in one run,
worse in the other), then each disagreement. Exits 1 when any verdict is opposite or fewer
than 90% agree.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from icdtransfer.report.verdicts import METRICS, SEED_SETS, agreement  # noqa: E402


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    a, b = (pd.read_csv(p) for p in sys.argv[1:])
    result = agreement(a, b)
    print(
        f"{result['agree']} of {result['verdicts']} verdicts agree ({100 * result['share']:.1f}%),"
        f" {result['opposite']} opposite"
    )
    keys = ["threshold_kind", "family", "system", "against"]
    left = a[a["seed_set"] == SEED_SETS[0]].set_index(keys)
    right = b[b["seed_set"] == SEED_SETS[0]].set_index(keys)
    for key in left.index.intersection(right.index):
        for metric in METRICS:
            va, vb = left.loc[key, f"{metric}_verdict"], right.loc[key, f"{metric}_verdict"]
            if va != vb:
                print(f"  {' / '.join(map(str, key))}, {metric}: {va} | {vb}")
    return 0 if result["opposite"] == 0 and result["share"] >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
