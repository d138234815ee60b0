"""Every arm of the simulated A/B by name, built from a directory of exported models.

``models`` holds one export per model (``glan-ray train X --out MODELS``): ``lrtg``, ``hrm``,
``isp``, ``am``, ``cql`` (dynamic α), ``cql_static`` (the same CQL with ``static_alpha=True``),
``dt`` (trained on HRM rewards) and ``dt_naive`` (the same DT trained on the naive session
duration: ``--set reward_column=reward --out`` to ``dt_naive``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from glan_ray import storage
from glan_ray.schema import PAGES
from glan_ray.sim.baselines import FixedPagePolicy, LoggingPolicy, OraclePolicy, UniformPolicy
from glan_ray.sim.config import SimConfig
from glan_ray.sim.interface import Policy


def _path(models: str | None, name: str) -> str:
    if not models:
        raise ValueError(f"arm needs trained models; pass the models directory (missing {name})")
    p = storage.join(models, name)
    if not storage.exists(storage.join(p, "model.pt")):
        raise FileNotFoundError(f"no exported '{name}' model at {p}")
    return p


def _glan(dt: str, lrtg: bool, hrm: bool, name: str) -> Callable[..., Policy]:
    def build(m: str | None, cfg: SimConfig, target_gain: float | None = None) -> Policy:
        from glan_ray.policy.glan import GlanPolicy

        return GlanPolicy(
            _path(m, dt),
            lrtg=_path(m, "lrtg") if lrtg else None,
            hrm=_path(m, "hrm") if hrm else None,
            name=name,
            target_gain=target_gain,
        )

    return build


def _klan(m: str | None, cfg: SimConfig) -> Policy:
    from glan_ray.policy.klan import KlanPolicy

    return KlanPolicy(_path(m, "isp"), _path(m, "cql"), _path(m, "am"))


def _cql(export: str) -> Callable[[str | None, SimConfig], Policy]:
    def build(m: str | None, cfg: SimConfig) -> Policy:
        from glan_ray.policy.klan import CQLPolicy

        return CQLPolicy(_path(m, export))

    return build


def _klan_isp(m: str | None, cfg: SimConfig) -> Policy:
    from glan_ray.policy.klan import ISPPolicy

    return ISPPolicy(_path(m, "isp"))


def _heuristic(kind: str) -> Callable[[str | None, SimConfig], Policy]:
    def build(m: str | None, cfg: SimConfig) -> Policy:
        from glan_ray.policy.heuristics import LastExitPolicy, MostVisitedPolicy

        return {"last_exit": LastExitPolicy, "most_visited": MostVisitedPolicy}[kind]()

    return build


def _constant(page: str) -> Callable[[str | None, SimConfig], Policy]:
    """Builder of the arm that always lands on ``page`` (model-free)."""

    def build(m: str | None, cfg: SimConfig) -> Policy:
        return FixedPagePolicy(PAGES.index(page))

    return build


ARMS: dict[str, Callable[..., Policy]] = {
    "logging": lambda m, cfg: LoggingPolicy(cfg),
    **{f"always_{p}": _constant(p) for p in PAGES},
    "uniform": lambda m, cfg: UniformPolicy(),
    "last_exit": _heuristic("last_exit"),
    "most_visited": _heuristic("most_visited"),
    "klan": _klan,
    "klan_isp": _klan_isp,
    "klan_iit": _cql("cql"),
    "cql": _cql("cql"),
    "cql_static": _cql("cql_static"),
    "glan": _glan("dt", lrtg=True, hrm=True, name="glan"),
    "glan_no_lrtg": _glan("dt", lrtg=False, hrm=True, name="glan_no_lrtg"),
    "glan_no_hrm": _glan("dt_naive", lrtg=True, hrm=False, name="glan_no_hrm"),
    "dt": _glan("dt_naive", lrtg=False, hrm=False, name="dt"),
    "oracle": lambda m, cfg: OraclePolicy(cfg),
}
"""Arm name -> builder(models_dir, sim_config, **options). ``klan_isp`` and ``klan_iit`` are
KLAN Table 2's ablations (ISP alone, IIT alone); ``cql`` is the old name of ``klan_iit`` (the
same policy) and ``cql_static`` is IIT with a static conservative coefficient."""
ALIASES = {"cql": "klan_iit"}
"""Arm -> the arm it is another name of (both run when both are asked for)."""
ARM_OPTIONS: dict[str, tuple[str, ...]] = {
    a: ("target_gain",) for a in ("glan", "glan_no_lrtg", "glan_no_hrm", "dt")
}
"""Options an arm's builder takes (GLAN arms: the DT's ``target_gain`` override)."""
CONSTANT_ARMS = tuple(f"always_{p}" for p in PAGES)
"""The constant-page arms (``always_featured``, ``always_explore``, ``always_following``): the
candidates for the A/B's best constant page."""
HEURISTICS = (*CONSTANT_ARMS, "uniform", "last_exit", "most_visited")
"""Model-free arms besides the control and the oracle."""
MODEL_FREE = ("logging", *HEURISTICS, "oracle")


def make_arm(
    name: str,
    models: str | None,
    cfg: SimConfig,
    options: dict[str, Any] | None = None,
    external: dict[str, str] | None = None,
) -> Policy:
    """Build arm ``name``; ``options`` (``ARM_OPTIONS[name]``) override its model defaults;
    ``external`` maps extra arm names to TorchScript policy files (``policy.external``)."""
    if external and name in external:
        from glan_ray.policy.external import load_external

        policy = load_external(external[name])
        policy.name = name
        return policy
    if name not in ARMS:
        raise ValueError(f"unknown arm {name!r}; expected one of {', '.join(ARMS)}")
    options = dict(options or {})
    unknown = sorted(set(options) - set(ARM_OPTIONS.get(name, ())))
    if unknown:
        valid = ", ".join(ARM_OPTIONS.get(name, ())) or "none"
        raise ValueError(f"arm {name!r}: unknown option(s) {', '.join(unknown)}; valid: {valid}")
    policy = ARMS[name](models, cfg, **options)
    policy.name = name
    return policy
