"""Rebuild the shipped split files (ids only) from the two source repositories.

    python presets/splits/convert.py CAML_GIT_DIR EDIN_GIT_DIR

CAML_GIT_DIR: a clone of github.com/jamesmullenbach/caml-mimic (its .git folder),
EDIN_GIT_DIR: a clone of github.com/JoakimEdin/medical-coding-reproducibility. The files are
read at each repository's HEAD with `git show`; the README beside this script names the
commits the shipped files came from. Each output holds HADM_IDs and their split only,
sorted by id: columns hadm_id (int64) and split (train | validation | test).
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
CAML = {  # benchmark -> {split: path in caml-mimic}
    name: {
        split: f"mimicdata/mimic3/{prefix}_{size}_hadm_ids.csv"
        for split, prefix in (("train", "train"), ("validation", "dev"), ("test", "test"))
    }
    for name, size in (("mimic3-full", "full"), ("mimic3-50", "50"))
}
EDIN = {  # benchmark -> path in medical-coding-reproducibility (columns _id, split)
    "mimic3-clean": "files/data/mimiciii_clean/mimiciii_clean_splits.feather",
    "mimic4-icd9": "files/data/mimiciv_icd9/mimiciv_icd9_split.feather",
    "mimic4-icd10": "files/data/mimiciv_icd10/mimiciv_icd10_split.feather",
}
EDIN_SPLITS = {"train": "train", "val": "validation", "test": "test"}


def show(git_dir: str, path: str) -> bytes:
    return subprocess.run(
        ["git", f"--git-dir={git_dir}", "show", f"HEAD:{path}"], check=True, capture_output=True
    ).stdout


def write(name: str, pairs: list[tuple[int, str]]) -> None:
    pairs.sort()
    table = pa.table(
        {"hadm_id": pa.array([i for i, _ in pairs], pa.int64()), "split": [s for _, s in pairs]}
    )
    pq.write_table(
        table,
        HERE / f"{name}.parquet",
        compression="zstd",
        use_dictionary=["split"],
        column_encoding={"hadm_id": "DELTA_BINARY_PACKED"},
    )
    print(name, len(pairs))


def main(caml_git: str, edin_git: str) -> None:
    for name, files in CAML.items():
        pairs = []
        for split, path in files.items():
            text = show(caml_git, path).decode("ascii")
            pairs.extend((int(line), split) for line in text.split() if line.strip())
        write(name, pairs)
    for name, path in EDIN.items():
        frame = feather.read_table(io.BytesIO(show(edin_git, path))).to_pandas()
        write(name, [(int(i), EDIN_SPLITS[s]) for i, s in zip(frame["_id"], frame["split"])])


if __name__ == "__main__":
    main(*sys.argv[1:3])
