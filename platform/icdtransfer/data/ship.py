"""Getting prepared data to Ray workers on other machines without a shared filesystem.

The driver packs a folder (a prepared corpus, a stage-1 model) into Ray's object store once;
a worker on the driver's node reads the original folder, a worker on any other node unpacks
the object into a node-local cache (`<tmp>/icdtransfer-cache/<node>/<digest>/`, written whole
then renamed, one writer per node at a time) and reads that. The digest covers every byte, so
a stale cache is never used.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Shipped:
    """A folder as the driver published it: where it is there, and how to get it elsewhere."""

    path: str  # absolute path on the driver's node
    node_id: str  # the driver's node
    digest: str
    ref: Any  # ray.ObjectRef of {file name: bytes}


def digest_folder(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:20]


def publish(folder: str | Path) -> Shipped:
    """Put a folder's files into the object store (call on the driver, Ray initialised)."""
    import ray

    folder = Path(folder).resolve()
    files = {
        p.name: p.read_bytes()
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".")
    }
    return Shipped(
        str(folder), ray.get_runtime_context().get_node_id(), digest_folder(folder), ray.put(files)
    )


def local_copy(shipped: Shipped) -> Path:
    """The folder on this node: the original on the driver's node, else a verified cache."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    if node == shipped.node_id and Path(shipped.path).is_dir():
        return Path(shipped.path)
    cache = Path(tempfile.gettempdir()) / "icdtransfer-cache" / node[:16]
    final = cache / shipped.digest
    if final.is_dir():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f".{shipped.digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one unpacker per node; the others wait, then reuse
        if not final.is_dir():
            files = ray.get(shipped.ref)
            tmp = cache / f".{shipped.digest}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            for name, data in files.items():
                (tmp / name).write_bytes(data)
            os.replace(tmp, final)
    return final
