"""OpenMP's waiting policy for CPU training on shared or oversubscribed cores.

PyTorch's CPU kernels run in OpenMP parallel regions, and by default libgomp's threads spin
(busy-wait) between regions. When the cores are shared (other processes, or this project's own
sweeps, which run more trial processes than there are cores: `ray.num_cpus`), a spinning thread
burns the time slice its partner needs and every region waits for a descheduled thread. On
this repository's 2-core machine under a load of about 7, `train_epoch` at the paper's size ran
4.4 notes/s with the default policy and 14.3 with OMP_WAIT_POLICY=PASSIVE (one thread: 14.3-15.2);
a passive thread costs a wake-up of microseconds per region when the cores are free.

OpenMP reads the variable when torch loads it, so the command line sets it before anything
imports torch, and Ray passes it to its workers; a value the user set is kept.
"""

from __future__ import annotations

import os

OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}


def openmp_defaults() -> dict[str, str]:
    """Set OPENMP_DEFAULTS where the environment leaves them unset; returns the values in force."""
    for name, value in OPENMP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    return {name: os.environ[name] for name in OPENMP_DEFAULTS}
