"""Starting or joining Ray with the settings this project needs (measured on Ray 2.60).

* `ray.train.report` blocks for the Train controller's health-check interval (about 2 s by
  default); the interval is lowered before Ray starts so a report costs well under a second.
* Train V2's controller queries the state API, which the dashboard process serves; started
  with include_dashboard=False the first worker group waits about a minute. The dashboard
  binds 127.0.0.1 only.
* Ray enables token authentication and says so with a warning at start; it stays enabled.
* Usage statistics stay off (hospital networks: nothing phones home). Ray 2.60's ray.init()
  already turns them off for an instance it starts (ray/_private/worker.py, unless a nightly
  wheel); RAY_USAGE_STATS_ENABLED=0 is set too, unless the user set it, so every Ray process
  this one starts inherits the choice. A cluster's head decides for the cluster:
  cluster.yaml starts it with --disable-usage-stats.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from icdtransfer.config import RayConfig

log = logging.getLogger(__name__)

HEALTH_CHECK_INTERVAL_S = "0.2"
OPENMP_VARIABLES = ("OMP_WAIT_POLICY",)
# Set in this process before Ray starts, unless the user set them.
PROCESS_DEFAULTS = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": HEALTH_CHECK_INTERVAL_S,
    "RAY_USAGE_STATS_ENABLED": "0",
}


def absolute_storage(path: str) -> str:
    """Ray wants an absolute storage_path (or a URI such as s3://bucket/prefix)."""
    if "://" in path:
        return path
    return str(Path(path).expanduser().resolve())


def process_defaults() -> None:
    """The environment Ray reads at start (PROCESS_DEFAULTS), where the user left it unset."""
    for name, value in PROCESS_DEFAULTS.items():
        os.environ.setdefault(name, value)


def train_run_state_file(run_dir: Path) -> Path:
    """The JSON file in which Ray Train V2 records a run's checkpoints, and from which a run
    restarted under the same name and storage path resumes.

    Ray exports no public name for it, so its private constant is read here and nowhere else
    (`ray.train.v2._internal`, which may move in any Ray release; Ray is pinned to 2.60): an
    upgrade that moves it breaks this one function, at once, with an ImportError."""
    from ray.train.v2._internal.constants import CHECKPOINT_MANAGER_SNAPSHOT_FILENAME

    return run_dir / CHECKPOINT_MANAGER_SNAPSHOT_FILENAME


def connect(cfg: RayConfig) -> None:
    """Start a local Ray instance (address null) or join a cluster (address "auto" or host)."""
    import ray

    process_defaults()
    if ray.is_initialized():
        return
    # Workers start in this directory with the package importable (editable install).
    env = {
        "env_vars": {
            "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": HEALTH_CHECK_INTERVAL_S,
            # OMP_WAIT_POLICY as the CLI set it (cli.py): a cluster's workers do not inherit it
            **{k: os.environ[k] for k in OPENMP_VARIABLES if k in os.environ},
        }
    }
    if cfg.address:
        ray.init(address=cfg.address, runtime_env=env, log_to_driver=True)
    else:
        # include_dashboard stays at Ray's default: with False, Train V2's worker group waits
        # about a minute for the state API before it starts.
        # address="local": always a new instance of our own, even when another Ray cluster
        # runs on this machine (plain ray.init() would join the most recent one).
        ray.init(
            address="local", num_cpus=cfg.num_cpus, dashboard_host="127.0.0.1", runtime_env=env
        )
    resources = ray.cluster_resources()
    log.info(
        "Ray: %d node(s), %s CPUs, %s GPUs",
        len(ray.nodes()),
        resources.get("CPU", 0),
        resources.get("GPU", 0),
    )
