"""Defaults for hospital networks: neither Ray nor DVC reports usage or checks for updates."""

from __future__ import annotations

from pathlib import Path

import pytest

from icdtransfer import ray_env

REPO = Path(__file__).resolve().parents[1]


def _ray_usage_stats_enabled() -> bool:
    from ray._common.usage import usage_lib

    return usage_lib.usage_stats_enabled()


def test_ray_usage_stats_are_off_unless_the_user_turns_them_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/config.json deciding for us
    monkeypatch.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
    assert _ray_usage_stats_enabled()  # Ray's own default: on
    ray_env.process_defaults()
    assert not _ray_usage_stats_enabled()
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "1")  # a user's explicit choice stands
    ray_env.process_defaults()
    assert _ray_usage_stats_enabled()


def test_dvc_does_not_check_for_updates_in_this_repository(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dvc.updater import Updater

    monkeypatch.chdir(REPO)
    assert Updater(tmp_dir=str(REPO / ".dvc" / "tmp")).is_enabled() is False
