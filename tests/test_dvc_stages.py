"""dvc.yaml against the code: each stage depends on exactly the package files its command runs
and exactly the params its command reads, and DVC agrees (a changed param makes exactly the
stages that read it stale)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers.checkout import copy_project
from helpers.dvc_stages import (
    REPO,
    command_code,
    command_name,
    command_reads,
    covered,
    normalised,
    pipeline,
    stage_reads,
)


@pytest.fixture(scope="module")
def stages():
    return pipeline()


def test_each_stage_depends_on_exactly_the_code_its_command_runs(stages) -> None:
    wrong = []
    for stage in stages:
        listed = {d for d in stage.deps if d.startswith("platform/")}
        wanted = command_code(command_name(stage.cmd))
        if listed != wanted:
            lines = "\n".join(f"      - {path}" for path in sorted(wanted))
            wrong.append(
                f"{stage.name}: missing {sorted(wanted - listed)}, not run "
                f"{sorted(listed - wanted)}; its code deps should read:\n{lines}"
            )
    assert not wrong, "\n".join(wrong)


def test_each_stage_lists_exactly_the_params_its_command_reads(stages) -> None:
    """A key the stage's cmd sets with --set comes from dvc.yaml, not from params.yaml."""
    for stage in stages:
        assert normalised(stage.params) == normalised(stage_reads(stage.cmd)), stage.name


def test_paths_in_dvc_yaml_come_from_params_the_stage_reads() -> None:
    """A `${section.key}` in a stage's deps or outs is a param its command reads too (so a
    changed path never makes a stage stale that does not use it)."""
    raw = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, spec in raw.items():
        body = spec.get("do", spec)
        reads = command_reads(command_name(body["cmd"].replace("${item}", "x")))
        used = set(re.findall(r"\$\{([a-z_]+\.[a-z_]+)\}", yaml.safe_dump(body)))
        assert {k for k in used if not covered(k, reads)} == set(), name


def test_the_report_depends_on_every_study_it_reads(stages) -> None:
    """The dashboard shows every study under sweep.results_dir, so the report stage depends
    on that whole folder: after any study reruns, the report is stale."""
    from dvc.repo import Repo

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    (report,) = [s for s in stages if s.name == "report"]
    assert params["sweep"]["results_dir"] in report.deps
    with Repo(str(REPO)) as repo:
        graph = repo.index.graph
        upstream = {s.addressing for s in graph.successors(repo.stage.collect("report")[0])}
    sweeps = {s.name for s in stages if s.name.startswith("sweep@")}
    assert sweeps and sweeps <= upstream


# --- DVC's view: a copy of the repository, every stage recorded as up to date -----------------


def leaves(tree: dict[str, Any], prefix: str = "") -> list[str]:
    """Every key of a params file as section.key."""
    out = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        out += leaves(value, f"{name}.") if isinstance(value, dict) and not prefix else [name]
    return out


def changed(value: Any) -> Any:
    """Another value of the same kind (DVC compares values; nothing here is run)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, value[-1]]
    return "x"  # None


NEW_STAGE = {"pipeline.variants": "tune_all", "pipeline.studies": "smoke"}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's files in a fresh git repository, each stage's outputs faked and
    recorded in dvc.lock by `dvc commit` (nothing trained): `dvc status` says all is up to
    date."""
    from dvc.repo import Repo

    dest = copy_project(tmp_path_factory.mktemp("recorded"))
    (dest / "dvc.lock").unlink(missing_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    cwd = os.getcwd()
    os.chdir(dest)  # DVC resolves a repository's stage cache against the working directory
    try:
        with Repo(str(dest)) as repo:
            for stage in repo.index.stages:
                for out in stage.outs:
                    path = Path(out.fs_path)
                    folder = path if not path.suffix else path.parent
                    folder.mkdir(parents=True, exist_ok=True)
                    (path / "fake" if not path.suffix else path).write_text("fake\n")
            repo.commit(None, force=True)
            assert repo.status() == {}
    finally:
        os.chdir(cwd)
    return dest


@pytest.mark.slow
def test_a_changed_param_makes_exactly_the_stages_that_read_it_stale(recorded: Path) -> None:
    """Every key of params.yaml, one at a time: `dvc status` lists exactly the stages whose
    command reads it (pipeline.* only adds stages, which are new, hence not run yet)."""
    from dvc.repo import Repo

    reads = {s.name: stage_reads(s.cmd) for s in pipeline()}
    text = (recorded / "params.yaml").read_text()
    wrong, keys = [], leaves(yaml.safe_load(text))
    assert len(keys) > 80
    cwd = os.getcwd()
    os.chdir(recorded)
    try:
        with Repo(str(recorded)) as repo:
            for key in keys:
                params = yaml.safe_load(text)
                section, name = key.split(".")
                if key in NEW_STAGE:
                    params[section][name] = [*params[section][name], NEW_STAGE[key]]
                    kind = "train_target" if name == "variants" else "sweep"
                    expected = {f"{kind}@{NEW_STAGE[key]}"}  # the new stage, never run
                else:
                    params[section][name] = changed(params[section][name])
                    expected = {s for s, r in reads.items() if covered(key, r)}
                (recorded / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
                repo._reset()  # read dvc.yaml again, with the new params
                stale = set(repo.status())
                if stale != expected:
                    wrong.append(f"{key}: stale {sorted(stale)}, reading it {sorted(expected)}")
    finally:
        (recorded / "params.yaml").write_text(text)
        os.chdir(cwd)
    assert not wrong, "\n".join(wrong)
