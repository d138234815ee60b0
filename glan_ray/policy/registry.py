"""Every arm of the simulated A/B by name, built from a directory of exported models.

``models`` holds one export per model (``glan-ray train X --out MODELS``): ``lrtg``, ``hrm``,
``isp``, ``am``, ``cql`` (dynamic α), ``cql_static`` (the same CQL with ``static_alpha=True``),
``cql_hist`` (the same CQL over obs ⊕ the history features: ``glan-ray train cql --history``),
``dt`` (trained on HRM rewards) and ``dt_naive`` (the same DT trained on the naive session
duration: ``--set reward_column=reward --out`` to ``dt_naive``). The critic-guided GLAN arms
(``glan_cg`` and its ablations) read ``cql`` beside their DT as the critic; ``glan_act`` reads
``dt_act`` (the same DT with advantage-conditioned tokens: ``--set act_critic=MODELS/cql``) and
``glan_target`` ``dt_target`` (the same DT asked for a per-state target: ``--set
state_target=true``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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


def _glan(
    dt: str, lrtg: bool, hrm: bool, name: str, critic: str | None = None
) -> Callable[..., Policy]:
    def build(
        m: str | None,
        cfg: SimConfig,
        target_gain: float | None = None,
        explore: str | None = None,
        critic_lambda: float | None = None,
        command: list[float] | None = None,
    ) -> Policy:
        from glan_ray.policy.glan import GlanPolicy

        return GlanPolicy(
            _path(m, dt),
            lrtg=_path(m, "lrtg") if lrtg else None,
            hrm=_path(m, "hrm") if hrm else None,
            name=name,
            target_gain=target_gain,
            explore=explore,
            critic=_path(m, critic) if critic else None,
            critic_lambda=critic_lambda,
            command=command,
        )

    return build


def _klan(m: str | None, cfg: SimConfig, explore: str | None = None) -> Policy:
    from glan_ray.policy.klan import KlanPolicy

    return KlanPolicy(_path(m, "isp"), _path(m, "cql"), _path(m, "am")).explore(explore)


def _cql(export: str, history: bool = False) -> Callable[..., Policy]:
    def build(m: str | None, cfg: SimConfig, explore: str | None = None) -> Policy:
        from glan_ray.policy.klan import CQLHistPolicy, CQLPolicy

        cls = CQLHistPolicy if history else CQLPolicy
        return cls(_path(m, export)).explore(explore)

    return build


def _klan_isp(m: str | None, cfg: SimConfig, explore: str | None = None) -> Policy:
    from glan_ray.policy.klan import ISPPolicy

    return ISPPolicy(_path(m, "isp")).explore(explore)


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
    "klan_iit_hist": _cql("cql_hist", history=True),
    "glan": _glan("dt", lrtg=True, hrm=True, name="glan"),
    "glan_no_lrtg": _glan("dt", lrtg=False, hrm=True, name="glan_no_lrtg"),
    "glan_no_hrm": _glan("dt_naive", lrtg=True, hrm=False, name="glan_no_hrm"),
    "dt": _glan("dt_naive", lrtg=False, hrm=False, name="dt"),
    "glan_cg": _glan("dt", lrtg=True, hrm=True, name="glan_cg", critic="cql"),
    "glan_cg_no_lrtg": _glan("dt", lrtg=False, hrm=True, name="glan_cg_no_lrtg", critic="cql"),
    "glan_cg_no_hrm": _glan("dt_naive", lrtg=True, hrm=False, name="glan_cg_no_hrm", critic="cql"),
    # their tokens are the command head's ĉ(s): R̂₁ and r̂ are not read, L-RTG and HRM not loaded
    "glan_act": _glan("dt_act", lrtg=False, hrm=False, name="glan_act"),
    "glan_target": _glan("dt_target", lrtg=False, hrm=False, name="glan_target"),
    "oracle": lambda m, cfg: OraclePolicy(cfg),
}
"""Arm name -> builder(models_dir, sim_config, **options). ``klan_isp`` and ``klan_iit`` are
KLAN Table 2's ablations (ISP alone, IIT alone); ``cql`` is the old name of ``klan_iit`` (the
same policy) and ``cql_static`` is IIT with a static conservative coefficient. ``klan_iit_hist``
is IIT over obs ⊕ the history features (``schema.HIST_FEATURES``), the control arm that tells
"GLAN models sequences" from "GLAN sees more of the day than obs". ``glan_cg`` is GLAN as
published choosing argmax_a [log π_DT(a | h) + λ·Â(s, a)/T] with the ``cql`` export as the
critic (``policy.glan``); ``glan_cg_no_lrtg`` / ``glan_cg_no_hrm`` are its ablations.
``glan_act`` is the DT with advantage-conditioned tokens (ACT, ``DTConfig.act_critic``),
``glan_target`` the DT asked for a per-state target (Reinformer, ``DTConfig.state_target``)."""
ALIASES = {"cql": "klan_iit"}
"""Arm -> the arm it is another name of (both run when both are asked for)."""
GLAN_ARMS = ("glan", "glan_no_lrtg", "glan_no_hrm", "dt")
"""GLAN as published and its ablations."""
CRITIC_GUIDED_ARMS = ("glan_cg", "glan_cg_no_lrtg", "glan_cg_no_hrm")
"""GLAN with critic-guided selection and its ablations."""
COMMAND_ARMS = ("glan_act", "glan_target")
"""The DTs asked for a command head's ĉ(s) (``DTRecord.command``): ACT and the per-state
target. They have no L-RTG to ablate (the head replaces R̂₁ and its decrements); ACT reads no
HRM either, the per-state target's DT trains on HRM's rewards."""
LEARNED_ARMS = ("klan", "klan_isp", "klan_iit", "cql", "cql_static", "klan_iit_hist", *GLAN_ARMS,
                *CRITIC_GUIDED_ARMS, *COMMAND_ARMS)  # fmt: skip
"""The arms with a learned distribution π, which can explore (``policy.explore``)."""
ARM_OPTIONS: dict[str, tuple[str, ...]] = {
    **{a: ("explore",) for a in LEARNED_ARMS},
    **{a: ("target_gain", "explore") for a in GLAN_ARMS},
    **{a: ("target_gain", "critic_lambda", "explore") for a in CRITIC_GUIDED_ARMS},
    **{a: ("command", "explore") for a in COMMAND_ARMS},
}
"""Options an arm's builder takes: every learned arm its ``explore`` (``Exploration.parse``:
greedy, epsilon=E, softmax[=T]; greedy when absent); GLAN arms also the DT's ``target_gain``;
critic-guided arms also ``critic_lambda`` (λ ≥ 0; default ``glan_step.CRITIC_LAMBDA``);
command arms also ``command`` (OBS_DIM + 1 coefficients of another command head for the same
DT, e.g. one of another expectile: ``eval.command_expectile``)."""
CONSTANT_ARMS = tuple(f"always_{p}" for p in PAGES)
"""The constant-page arms (``always_featured``, ``always_explore``, ``always_following``): the
candidates for the A/B's best constant page."""
HEURISTICS = (*CONSTANT_ARMS, "uniform", "last_exit", "most_visited")
"""Model-free arms besides the control and the oracle."""
MODEL_FREE = ("logging", *HEURISTICS, "oracle")


@dataclass(frozen=True)
class Variant:
    """A named arm that is another arm with other models or options, e.g. the incumbent KLAN
    trained on generation 0's data beside a KLAN retrained on generation 1's, or an exploring
    KLAN beside its greedy self (``ABConfig.variants``)."""

    arm: str
    """The built-in arm it builds (``ARMS``)."""
    models: str | None = None
    """Its models directory; None: the A/B's ``models``."""
    options: dict[str, Any] = field(default_factory=dict)
    """Its builder options (``ARM_OPTIONS[arm]``), under the A/B's options for the name."""

    def __post_init__(self) -> None:
        if self.arm not in ARMS:
            raise ValueError(f"variant: unknown arm {self.arm!r}; expected one of "
                             f"{', '.join(ARMS)}")  # fmt: skip
        check_options(self.arm, self.options)

    @classmethod
    def of(cls, spec: Variant | dict[str, Any]) -> Variant:
        """A ``Variant`` from itself or from a dict with its fields (unknown keys refused)."""
        if isinstance(spec, Variant):
            return spec
        unknown = sorted(set(spec) - {"arm", "models", "options"})
        if unknown:
            raise ValueError(f"variant: unknown field(s) {', '.join(unknown)}; valid: arm, "
                             "models, options")  # fmt: skip
        if "arm" not in spec:
            raise ValueError("variant: field 'arm' is required")
        return cls(**spec)


def check_options(arm: str, options: dict[str, Any]) -> None:
    """Refuse options arm ``arm``'s builder does not take, naming them and the valid ones."""
    unknown = sorted(set(options) - set(ARM_OPTIONS.get(arm, ())))
    if unknown:
        valid = ", ".join(ARM_OPTIONS.get(arm, ())) or "none"
        raise ValueError(f"arm {arm!r}: unknown option(s) {', '.join(unknown)}; valid: {valid}")


def make_arm(
    name: str,
    models: str | None,
    cfg: SimConfig,
    options: dict[str, Any] | None = None,
    external: dict[str, str] | None = None,
    variants: dict[str, Variant | dict[str, Any]] | None = None,
) -> Policy:
    """Build arm ``name``; ``options`` (``ARM_OPTIONS[name]``) override its model defaults;
    ``external`` maps extra arm names to TorchScript policy files (``policy.external``);
    ``variants`` maps extra arm names to the ``Variant`` they are."""
    if external and name in external:
        from glan_ray.policy.external import load_external

        policy = load_external(external[name])
        policy.name = name
        return policy
    base, options = name, dict(options or {})
    if variants and name in variants:
        v = Variant.of(variants[name])
        base, models, options = v.arm, v.models or models, {**v.options, **options}
    if base not in ARMS:
        raise ValueError(f"unknown arm {name!r}; expected one of {', '.join(ARMS)}")
    check_options(base, options)
    policy = ARMS[base](models, cfg, **options)
    policy.name = name
    return policy


def incumbent_factory(
    arm: str, models: str | None, cfg: SimConfig, explore: str | None = None
) -> tuple[Callable[[SimConfig], Policy], str]:
    """The deployed system of a generation run (``data.generate``'s ``policy_factory``): learned
    arm ``arm`` from ``models``, exploring by ``explore`` (default ``DEPLOY_DEFAULT``); built once
    here so a bad arm, models directory or exploration fails before any Ray work. Returns the
    factory and the name the data records, e.g. ``klan(epsilon=0.1)``."""
    from glan_ray.policy.explore import DEPLOY_DEFAULT, Exploration

    if arm not in LEARNED_ARMS:
        raise ValueError(f"incumbent: {arm!r} is not a learned arm; expected one of "
                         f"{', '.join(LEARNED_ARMS)}")  # fmt: skip
    spec = str(Exploration.parse(explore or DEPLOY_DEFAULT))
    options = {"explore": spec}
    make_arm(arm, models, cfg, options)

    def factory(c: SimConfig) -> Policy:
        return make_arm(arm, models, c, options)

    return factory, f"{arm}({spec})"
