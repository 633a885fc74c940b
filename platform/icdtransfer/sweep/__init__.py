"""Sweeps: study files -> Ray Tune + Optuna; the member store; result collection."""


class SweepInterrupted(RuntimeError):
    """The sweep stopped before every trial finished (Ctrl-C, a lost driver); resumable."""


class StudyBusy(RuntimeError):
    """Another run of the same study holds its lock; the message names the holder."""
