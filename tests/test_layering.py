"""The package's layering, read from the source (every import, lazy ones included): no import
cycles; inference (models, policies, the simulator, evaluation, labelling, Serve) imports no
training code; only ``glan_ray.rllib`` imports RLlib."""

from __future__ import annotations

import ast
import pathlib

import pytest

import glan_ray

ROOT = pathlib.Path(glan_ray.__file__).parent
INFERENCE = ("glan_ray.models", "glan_ray.nn", "glan_ray.policy", "glan_ray.sim", "glan_ray.eval",
             "glan_ray.data", "glan_ray.serving", "glan_ray.schema", "glan_ray.label",
             "glan_ray.apps", "glan_ray.ingest")  # fmt: skip
"""Packages that run exported models or produce data, and must not need the training code."""
TRAINING = ("glan_ray.train", "glan_ray.rllib")


def _module(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> every module it imports anywhere in its source (``glan_ray.*`` and ``ray.*``)."""
    out: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        out[_module(path)] = names
    return out


GRAPH = _imports()


def _inside(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_no_import_cycles():
    edges = {m: {n for n in names if n in GRAPH and n != m} for m, names in GRAPH.items()}
    state: dict[str, int] = {}  # 1: on the DFS stack, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path[path.index(n):], n]))
            if n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_cycles_between_packages():
    """``glan_ray.data`` -> ``glan_ray.models`` and back would be one: packages form a DAG."""
    edges: dict[str, set[str]] = {}
    for m, names in GRAPH.items():
        for n in names:
            if n in GRAPH and n != "glan_ray" and _package(n) != _package(m):
                edges.setdefault(_package(m), set()).add(_package(n))

    def reaches(a: str, b: str, seen: set[str]) -> bool:
        return any(n == b or (n not in seen and reaches(n, b, seen | {n}))
                   for n in edges.get(a, ()))  # fmt: skip

    loops = sorted(f"{a} <-> {b}" for a in edges for b in edges[a] if reaches(b, a, {b}))
    assert loops == [], loops
    assert "glan_ray.models" in edges["glan_ray.label"]  # the checker sees the edges


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if _inside(m, INFERENCE)))
def test_inference_imports_no_training_code(module):
    bad = sorted(n for n in GRAPH[module] if _inside(n, TRAINING)
                 or _inside(n, ("ray.train", "ray.tune", "ray.rllib")))  # fmt: skip
    assert not bad, f"{module} imports training code: {bad}"


def test_only_glan_ray_rllib_imports_rllib():
    users = sorted(m for m, names in GRAPH.items() if not _inside(m, ("glan_ray.rllib",))
                   and any(_inside(n, ("ray.rllib",)) for n in names))  # fmt: skip
    assert users == []


def test_the_checker_sees_lazy_imports():
    # pipeline imports Ray Train and RLlib code inside its stage functions only
    assert "glan_ray.rllib.launch" in GRAPH["glan_ray.pipeline"]
    assert "glan_ray.models.checkpoint" in GRAPH["glan_ray.label"]
