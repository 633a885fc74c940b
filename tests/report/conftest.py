"""The report run shared by tests/report/test_report.py and test_report_axes.py: built once
per session (tests/helpers/report_studies.py)."""

from __future__ import annotations

import pytest

from helpers.report_studies import build_reported


@pytest.fixture(scope="session")
def reported(ray_local, tiny, tiny_params, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return build_reported(tiny, tiny_params, tmp_path_factory.mktemp("report"))
