"""cluster.yaml, checked with Ray's own cluster-config schema and Ray 2.60's AWS bootstrap code
(ray/autoscaler/_private/aws/config.py), without cloud calls."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.aws import config as aws_config
from ray.autoscaler._private.command_runner import SSHCommandRunner
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def config() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def _policy(name: str) -> list[dict]:
    document = json.loads((REPO / name).read_text())
    assert document["Version"] == "2012-10-17"
    return document["Statement"]


def _actions(statements: list[dict]) -> set[str]:
    out: set[str] = set()
    for s in statements:
        assert s["Effect"] == "Allow"
        out |= {s["Action"]} if isinstance(s["Action"], str) else set(s["Action"])
    return out


def test_cluster_yaml_passes_rays_schema(config: dict) -> None:
    validate_config(config)
    prepared = prepare_config(copy.deepcopy(config))  # merged with Ray's AWS defaults
    validate_config(prepared)
    workers = prepared["available_node_types"]["gpu_worker"]
    assert workers["min_workers"] == 0
    assert workers["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert prepared["head_node_type"] == "head"


def test_ray_creates_no_security_group_and_no_open_ssh_rule(
    config: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What Ray adds to a group it creates, besides the config's own rules: SSH from anywhere.
    rules = aws_config._create_default_inbound_rules(set(), [])
    assert {"CidrIp": "0.0.0.0/0"} in [ip for r in rules for ip in r.get("IpRanges", [])]
    # _configure_security_group creates (and opens) groups only for node types without
    # SecurityGroupIds; with a pre-created group on every node type it leaves them alone.
    prepared = prepare_config(copy.deepcopy(config))

    def refuse(*args: object) -> None:
        raise AssertionError("Ray would create a security group with SSH open to 0.0.0.0/0")

    monkeypatch.setattr(aws_config, "_upsert_security_groups", refuse)
    for node_type in prepared["available_node_types"].values():
        groups = node_type["node_config"]["SecurityGroupIds"]
        assert groups and all(g.startswith("sg-") for g in groups)
    assert aws_config._configure_security_group(copy.deepcopy(prepared)) == prepared
    assert "security_group" not in config["provider"]  # read only when Ray makes the group
    del prepared["available_node_types"]["gpu_worker"]["node_config"]["SecurityGroupIds"]
    with pytest.raises(AssertionError, match="0.0.0.0/0"):
        aws_config._configure_security_group(prepared)


def test_ray_keeps_the_configured_image(config: dict) -> None:
    # Without an ImageId, _check_ami picks Ray's DEFAULT_AMI: a Deep Learning AMI with CUDA 11.2
    # on Ubuntu 18.04, whose driver cannot run the CUDA build of torch 2.13.0.
    assert "11.2" in aws_config.DEFAULT_AMI_NAME or "18.04" in aws_config.DEFAULT_AMI_NAME
    prepared = prepare_config(copy.deepcopy(config))
    nodes = prepared["available_node_types"]
    images = {key: node["node_config"]["ImageId"] for key, node in nodes.items()}
    aws_config._check_ami(prepared)
    assert {key: node["node_config"]["ImageId"] for key, node in nodes.items()} == images
    for image in images.values():
        assert image not in aws_config.DEFAULT_AMI.values()
        assert "x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04" in image
    # and a GPU node whose driver or torch build does not fit stops its own setup
    checks = " ".join(config["worker_setup_commands"])
    assert "nvidia-smi" in checks and "torch.cuda.is_available()" in checks


def test_the_volumes_are_encrypted(config: dict) -> None:
    for node_type in config["available_node_types"].values():
        mappings = node_type["node_config"]["BlockDeviceMappings"]
        assert mappings and all(m["Ebs"]["Encrypted"] is True for m in mappings)


def test_credentials_and_the_data_cache_stay_off_the_nodes(config: dict) -> None:
    options = {"rsync_exclude": config["rsync_exclude"], "rsync_filter": config["rsync_filter"]}
    args = SSHCommandRunner._create_rsync_filter_args(None, options)  # Ray's rsync arguments
    for path in (".dvc/config.local", ".dvc/cache", ".dvc/tmp"):
        assert ["--exclude", path] == args[args.index(path) - 1 : args.index(path) + 1]
    assert "dir-merge,- .gitignore" in args  # and whatever git ignores, folder by folder
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", ".dvc/config.local", ".dvc/cache/files/md5/ab"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert len(ignored.stdout.split()) == 2


def test_head_and_workers_have_their_own_least_privilege_roles(config: dict) -> None:
    nodes = config["available_node_types"]
    head = nodes["head"]["node_config"]["IamInstanceProfile"]["Name"]
    worker = nodes["gpu_worker"]["node_config"]["IamInstanceProfile"]["Name"]
    assert head != worker
    head_policy = _policy("cluster-iam-head.json")
    needed = {
        "ec2:RunInstances",
        "ec2:DescribeInstances",
        "ec2:TerminateInstances",
        "ec2:CreateTags",
        "iam:PassRole",
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
    }
    assert needed <= _actions(head_policy)
    assert not any("*" in a for a in _actions(head_policy))  # no ec2:* or s3:*
    passes = [s for s in head_policy if s["Action"] == "iam:PassRole"]
    assert [s["Resource"].rsplit("/", 1)[1] for s in passes] == [worker]
    terminate = [s for s in head_policy if "ec2:TerminateInstances" in s["Action"]]
    assert all("aws:ResourceTag/ray-cluster-name" in str(s["Condition"]) for s in terminate)
    worker_actions = _actions(_policy("cluster-iam-worker.json"))
    assert worker_actions and all(a.startswith("s3:") for a in worker_actions)


def test_cluster_is_closed_and_installs_the_pinned_project(config: dict) -> None:
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "--disable-usage-stats" in head_start  # the head reports for the whole cluster
    setup = " ".join(config["setup_commands"])
    assert "requirements/constraints.txt" in setup and '-e ".[cluster]"' in setup
    assert config["file_mounts"] == {"/home/ubuntu/icdtransfer": "."}


def test_schema_rejects_a_broken_config(config: dict) -> None:
    config["available_node_types"]["gpu_worker"]["min_wokers"] = 0  # a typo Ray must catch
    with pytest.raises(jsonschema.ValidationError):
        validate_config(config)
