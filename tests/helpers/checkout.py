"""The project as a fresh clone would have it: the files git tracks, plus new ones it does not
ignore (so a test sees the working tree's edits)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def project_files() -> list[str]:
    """Paths, relative to the repository, of every file a clone would hold."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [name for name in listed if (REPO / name).is_file()]


def copy_project(dest: Path) -> Path:
    """Copy those files into `dest` (no .git, no outputs DVC keeps out of git)."""
    for name in project_files():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)
    return dest
