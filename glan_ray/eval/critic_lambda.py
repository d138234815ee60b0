"""λ of critic-guided GLAN chosen on held-out validation users, never on the A/B's (issue 29).

The ``glan_cg`` arms pick argmax_a [log π_DT(a | h) + λ·Â(s, a)/T] (``policy.glan_step``). The
A/B's users start at id 50,000,000 with simulator seeds 0, 1; ``tune_critic_lambda`` plays other
users (id 70,000,000 on) with another seed (9), so choosing λ here does not peek at the test. For
each λ it plays the users under the arm and under the logging policy with common random numbers
(one Ray task per λ) and reports usage time and DAU relative to logging, the page shares and, on
the decisions of the first ``agree_users`` users under that λ, how often the choice is the
critic's own argmax and the DT's argmax (``eval.critic_agreement``). The critic alone
(``klan_iit``, greedy on the same Q) is played beside as the λ → ∞ reference. The best λ is the
one of highest usage (ties: the larger λ). Unless it beats the largest λ of the grid (the critic
alone) at p < 0.05, paired, the DT adds nothing to the critic on these users
(``LambdaTuning.dt_adds_nothing``).

Needs a connected Ray (``runtime.init_ray``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from glan_ray.eval.ab import run_shard
from glan_ray.eval.critic_agreement import collect_decisions, critic_agreement
from glan_ray.eval.stats import compare
from glan_ray.schema import PAGES
from glan_ray.sim.worlds import world_overrides

LAMBDAS = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 1e6)
"""The default λ grid: the DT alone (0) to the critic alone (1e6)."""


@dataclass(frozen=True)
class LambdaPlay:
    """Where the users are played: a world, users and days none of the A/B's."""

    models: str
    """Exported models (``dt``, ``cql``, ...)."""
    arm: str = "glan_cg"
    """Critic-guided arm (``policy.registry.CRITIC_GUIDED_ARMS``)."""
    world: str = "default"
    """Simulated world (``sim.worlds``; a name or a scaled spec)."""
    users: int = 1000
    """Validation users."""
    agree_users: int = 200
    """The first this many are played again under each λ to measure the agreement."""
    days: int = 5
    """Days simulated (new users, no burn-in)."""
    seed: int = 9
    """Simulator seed (the A/B uses 0, 1)."""
    first_user: int = 70_000_000
    """First validation user id (the A/B's start at 50,000,000)."""


@dataclass(frozen=True)
class LambdaTuning:
    """The λ sweep's figures (``tune_critic_lambda``)."""

    play: LambdaPlay
    rows: list[dict[str, Any]]
    """Per λ: ``critic_lambda``, ``usage_time`` and ``dau`` vs logging (``stats.compare``
    dicts), ``assign`` (page shares) and ``agreement`` (``CriticAgreement`` dict)."""
    critic_alone: dict[str, Any]
    """``klan_iit`` on the same critic, vs logging."""
    best_critic_lambda: float
    """The λ of highest usage (ties: the larger)."""
    best_vs_largest: dict[str, Any]
    """Usage of the best λ vs the grid's largest (the critic alone), paired."""
    best_vs_smallest: dict[str, Any]
    """Usage of the best λ vs the grid's smallest (the DT alone at 0), paired."""
    dt_adds_nothing: bool
    """The best λ does not beat the largest at p < 0.05: the DT adds nothing to the critic."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _play(arm: str, lam: float | None, play: LambdaPlay, sim: dict[str, Any]) -> dict[str, Any]:
    """One arm at one λ (None: not a critic-guided arm): its units and, for a critic-guided arm,
    the agreement of its choices on the first ``agree_users`` users."""
    opts = {"critic_lambda": lam} if lam is not None else {}
    common = (sim, play.seed, play.first_user)
    out: dict[str, Any] = {
        "units": run_shard(arm, play.models, *common, play.users, play.days, opts)["units"]
    }
    if lam is not None:
        d = collect_decisions(arm, play.models, *common, play.agree_users, play.days, opts)
        out["agreement"] = critic_agreement(d.logits, d.q, [lam], d.temperature)[0].to_dict()
    return out


def versus(u: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Usage and DAU of units ``u`` vs ``base`` (paired: the same users and random numbers)."""
    usage = compare(u["usage"], base["usage"], u["days"], base["days"], paired=True)
    dau = compare(u["active_days"], base["active_days"], u["days"], base["days"], paired=True)
    shares = {p: float(u[f"assign_{p}"].sum() / max(u["sessions"].sum(), 1)) for p in PAGES}
    return {"usage_time": usage.to_dict(), "dau": dau.to_dict(), "assign": shares}


def tune_critic_lambda(play: LambdaPlay, lambdas: Sequence[float] = LAMBDAS) -> LambdaTuning:
    """Play ``play.arm`` at every λ of ``lambdas`` (finite, >= 0; at least two) on the
    validation users, logging and the critic alone beside; the figures and the best λ."""
    import ray

    lams = sorted({float(x) for x in lambdas})
    if len(lams) < 2 or lams[0] < 0 or lams[-1] == float("inf"):
        raise ValueError(f"lambdas: need at least two finite values >= 0; got {list(lambdas)}")
    sim = world_overrides(play.world)
    task = ray.remote(num_cpus=1)(_play)
    refs = {lam: task.remote(play.arm, lam, play, sim) for lam in lams}
    base_ref = task.remote("logging", None, play, sim)
    critic_ref = task.remote("klan_iit", None, play, sim)
    base = ray.get(base_ref)["units"]
    got = {lam: ray.get(ref) for lam, ref in refs.items()}
    rows = [{"critic_lambda": lam, **versus(r["units"], base), "agreement": r["agreement"]}
            for lam, r in got.items()]  # fmt: skip
    best = max(rows, key=lambda r: (r["usage_time"]["rel_pct"], r["critic_lambda"]))
    lam = best["critic_lambda"]
    vs_top = versus(got[lam]["units"], got[lams[-1]]["units"])["usage_time"]
    vs_zero = versus(got[lam]["units"], got[lams[0]]["units"])["usage_time"]
    return LambdaTuning(
        play=play,
        rows=rows,
        critic_alone=versus(ray.get(critic_ref)["units"], base),
        best_critic_lambda=lam,
        best_vs_largest=vs_top,
        best_vs_smallest=vs_zero,
        dt_adds_nothing=not (vs_top["rel_pct"] > 0 and vs_top["p_value"] < 0.05),
    )


__all__ = ["LAMBDAS", "LambdaPlay", "LambdaTuning", "tune_critic_lambda"]
