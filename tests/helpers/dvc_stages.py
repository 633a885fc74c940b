"""What each DVC stage runs and reads, from two sides: dvc.yaml as DVC resolves it, and the
code of the `icdtransfer` command in the stage's `cmd` (its function in cli.py, and every
package module that function reaches through imports)."""

from __future__ import annotations

import ast
import shlex
from dataclasses import dataclass
from pathlib import Path

from helpers.code_graph import SOURCE_ROOT, closure, import_graph, imported_by, module_file

REPO = SOURCE_ROOT.parent
CLI = "icdtransfer.cli"


@dataclass
class Stage:
    """One stage of dvc.yaml, resolved by DVC (foreach expanded, ${...} filled in)."""

    name: str
    cmd: str
    params: set[str]  # section or section.key names in its `params`
    deps: set[str]  # paths of its other deps, as written


def pipeline(root: Path = REPO) -> list[Stage]:
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    stages = []
    with Repo(str(root)) as repo:
        for stage in repo.index.stages:
            params: set[str] = set()
            deps: set[str] = set()
            for dep in stage.deps:
                if isinstance(dep, ParamsDependency):
                    params |= set(dep.params or [])
                else:
                    deps.add(dep.def_path)
            stages.append(Stage(stage.addressing, stage.cmd, params, deps))
    return stages


def command_name(cmd: str) -> str:
    """`icdtransfer train-target --set ...` -> `train-target`."""
    words = shlex.split(cmd)
    assert words[0] == "icdtransfer", f"{cmd!r}: a stage runs one icdtransfer command"
    return words[1]


def overridden(cmd: str) -> set[str]:
    """Keys the stage's cmd sets with --set: they come from dvc.yaml, not params.yaml."""
    words = shlex.split(cmd)
    return {words[i + 1].split("=")[0] for i, w in enumerate(words) if w == "--set"}


def _cli_tree() -> ast.Module:
    path = module_file(CLI)
    assert path is not None
    return ast.parse(path.read_text(encoding="utf-8"))


def command_function(command: str) -> ast.FunctionDef:
    """The function cli.COMMANDS runs for `command`."""
    tree = _cli_tree()
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == command:
                    assert isinstance(value, ast.Tuple) and isinstance(value.elts[0], ast.Name)
                    return functions[value.elts[0].id]
    raise AssertionError(f"cli.COMMANDS has no command {command!r}")


def command_code(command: str) -> set[str]:
    """Repository paths of every package file the command runs: cli.py's module-level
    imports, the imports inside the command's function, and all they import in turn."""
    tree = _cli_tree()
    top = ast.Module(body=[n for n in tree.body if not isinstance(n, ast.FunctionDef)])
    start = imported_by(top) | imported_by(command_function(command))
    files = {module_file(m) for m in closure(import_graph(), start) | {CLI}}
    return {str(f.relative_to(REPO)) for f in files if f is not None}


def command_reads(command: str) -> set[str]:
    """The params the command's function reads: `params.<section>` passed whole, or
    `params.<section>.<key>`. Passing `params` itself (everything) is an error."""
    function = command_function(command)
    parents = {id(c): n for n in ast.walk(function) for c in ast.iter_child_nodes(n)}
    reads = set()
    for node in ast.walk(function):
        if not (isinstance(node, ast.Name) and node.id == "params"):
            continue
        if isinstance(node.ctx, ast.Store) or isinstance(parents.get(id(node)), ast.arg):
            continue
        chain, current = [], parents.get(id(node))
        while isinstance(current, ast.Attribute) and len(chain) < 2:
            chain.append(current.attr)
            current = parents.get(id(current))
        assert chain, f"{command}: passes the whole Params on (line {node.lineno})"
        assert _is_param(chain), f"{command}: params.{'.'.join(chain)} is not a param"
        reads.add(".".join(chain))
    return reads


def _is_param(chain: list[str]) -> bool:
    """Whether params.<chain> names a section or a key (not, say, a method of a section)."""
    import dataclasses

    from icdtransfer.config import Params

    sections = {f.name: f.type for f in dataclasses.fields(Params)}
    if chain[0] not in sections:
        return False
    keys = {f.name for f in dataclasses.fields(_section_class(sections[chain[0]]))}
    return len(chain) == 1 or chain[1] in keys


def stage_reads(cmd: str) -> set[str]:
    """The params a stage's command reads from params.yaml: what its function reads, less
    the keys its cmd sets with --set (a section read whole is then listed key by key)."""
    import dataclasses

    from icdtransfer.config import Params

    sections = {f.name: f.type for f in dataclasses.fields(Params)}
    reads, fixed = command_reads(command_name(cmd)), overridden(cmd)
    out = set()
    for read in reads:
        if read in {key.split(".")[0] for key in fixed}:
            keys = [f.name for f in dataclasses.fields(_section_class(sections[read]))]
            out |= {f"{read}.{k}" for k in keys} - fixed
        elif read not in fixed:
            out.add(read)
    return out


def _section_class(annotation: object) -> type:
    from icdtransfer import config

    return getattr(config, annotation) if isinstance(annotation, str) else annotation


def normalised(reads: set[str]) -> set[str]:
    """`reads` without the keys of sections read whole (`source` covers `source.out_dir`)."""
    return {r for r in reads if "." not in r or r.split(".")[0] not in reads}


def covered(key: str, reads: set[str]) -> bool:
    """Whether reading `reads` (sections or section.key) includes `key` (section.key)."""
    return key in reads or key.split(".")[0] in reads
