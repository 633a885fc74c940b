"""Sweeps: study files -> Ray Tune + Optuna; the member store; result collection."""


class SweepInterrupted(RuntimeError):
    """The sweep stopped before every trial finished (Ctrl-C, a lost driver); resumable."""
