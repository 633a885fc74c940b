"""Named kill points for the fault-injection test (tests/sweep/test_faults.py).

`ICDTRANSFER_FAULT=<point>:<n>` makes the n-th time a process reaches `fault(<point>)` kill
the sweep as a lost head would be lost: SIGKILL to the process group of the sweep (the
driver, its Ray processes and workers, which the test starts in a session of their own;
`ICDTRANSFER_FAULT_PGID` names another group), so nothing gets a clean shutdown. Unset
(always, outside that test), `fault()` is one dictionary lookup. The count is per process:
the driver, the store actor and each trial process count their own hits.
`ICDTRANSFER_FAULT_LOG`, when set, gets one line per kill (the point), so the test can tell
a kill point that was reached from one that was not.
"""

from __future__ import annotations

import os
import signal

_HITS: dict[str, int] = {}


def fault(point: str) -> None:
    spec = os.environ.get("ICDTRANSFER_FAULT")
    if not spec:
        return
    name, _, count = spec.rpartition(":")
    if name != point:
        return
    _HITS[point] = _HITS.get(point, 0) + 1
    if _HITS[point] != int(count):
        return
    record = os.environ.get("ICDTRANSFER_FAULT_LOG")
    if record:
        with open(record, "a", encoding="utf-8") as handle:
            handle.write(point + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    os.killpg(int(os.environ.get("ICDTRANSFER_FAULT_PGID") or os.getpgrp()), signal.SIGKILL)
    os._exit(137)


def arm() -> None:
    """In the driver, before Ray starts: its workers (which inherit its environment but run
    in process groups of their own) kill the driver's group, not only their own."""
    if os.environ.get("ICDTRANSFER_FAULT"):
        os.environ.setdefault("ICDTRANSFER_FAULT_PGID", str(os.getpgrp()))


def fault_points():
    """A Tune callback with the driver's kill points in Tune's loop: a trial's result seen by
    Tune but not yet in its saved state (`driver_trial_result`), a checkpoint being registered
    (`driver_checkpoint`), a trial completing (`driver_trial_complete`), and the last trial
    ended (`driver_experiment_end`)."""
    from ray.tune import Callback

    class FaultPoints(Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            fault("driver_trial_result")

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
            fault("driver_checkpoint")

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            fault("driver_trial_complete")

        def on_experiment_end(self, trials, **info) -> None:
            fault("driver_experiment_end")

    return FaultPoints()
