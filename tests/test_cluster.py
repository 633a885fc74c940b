"""cluster.yaml, checked with Ray's own cluster-config schema (no cloud calls)."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def config() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_schema(config: dict) -> None:
    validate_config(config)
    prepared = prepare_config(copy.deepcopy(config))  # merged with Ray's AWS defaults
    validate_config(prepared)
    workers = prepared["available_node_types"]["gpu_worker"]
    assert workers["min_workers"] == 0
    assert workers["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert prepared["head_node_type"] == "head"


def test_cluster_is_closed_and_installs_the_pinned_project(config: dict) -> None:
    rules = config["provider"]["security_group"]["IpPermissions"]
    assert [(r["FromPort"], r["ToPort"]) for r in rules] == [(22, 22)]  # SSH only
    assert all(ip["CidrIp"] != "0.0.0.0/0" for r in rules for ip in r["IpRanges"])
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    setup = " ".join(config["setup_commands"])
    assert "requirements/constraints.txt" in setup and '-e ".[cluster]"' in setup
    assert config["file_mounts"] == {"/home/ubuntu/icdtransfer": "."}


def test_schema_rejects_a_broken_config(config: dict) -> None:
    config["available_node_types"]["gpu_worker"]["min_wokers"] = 0  # a typo Ray must catch
    with pytest.raises(jsonschema.ValidationError):
        validate_config(config)
