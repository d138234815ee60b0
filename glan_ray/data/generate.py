"""Generate the datasets: simulator shards on Ray actors, Parquet written by Ray tasks.

Users are split into shards of whole RNG blocks; each shard lives in a ``ShardSimulator`` actor
that carries its users' state from day to day. Work proceeds in waves (a group of shards × a
chunk of days): the actors return one Arrow table per dataset, and one task per table writes
it with pyarrow as ``<out>/<dataset>/part-<wave>-<shard>/<dataset>-0000-0.parquet`` (rows in
the simulator's order, which label_hrm and the history features rely on) while the actors
already simulate the next wave. Ray Data reads them.
Only about one wave is in memory at a time, so memory stays flat in the number of users.
File names are deterministic, so the same seed gives byte-identical Parquet.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import ray

from glan_ray import schema, storage
from glan_ray.apps import AppSpec, plpm_spec
from glan_ray.data.parts import write_part
from glan_ray.data.read import spec_manifest
from glan_ray.data.summary import SimSummary
from glan_ray.data.tables import day_tables
from glan_ray.sim.baselines import make_policy
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate
from glan_ray.sim.interface import Policy

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class GenerateOptions:
    """How to lay out a generation run (the simulator's own parameters are in SimConfig)."""

    users: int
    """Number of users."""
    days: int
    """Number of consecutive days."""
    rct: bool = False
    """RCT mode: random page treatment per user-day (with control) and the ``rct`` dataset."""
    policy: str = "logging"
    """Simulator policy that logs the data (see ``sim.baselines.SIM_POLICIES``); with a
    ``policy_factory`` given to ``generate``, the name it is recorded under."""
    burn_in_days: int = 0
    """Days the users live under ``burn_in_policy`` before the days written (not written): with
    the seed, users and ``burn_in_rct`` of an earlier run of ``burn_in_days`` days, they are
    exactly that run's users, continuing (the incumbent's traffic after the heuristic's)."""
    burn_in_policy: str = "logging"
    """Simulator policy of the burn-in (``sim.baselines.SIM_POLICIES``)."""
    burn_in_rct: bool = False
    """Whether the burn-in ran in RCT mode (as the earlier run it continues)."""
    shard_users: int | None = None
    """Users per actor; default: as many as keep every CPU busy, at most 20,000 users."""
    wave_user_days: int = 50_000
    """Approximate user-days per write wave: bounds memory."""
    overwrite: bool = False
    """Replace an existing output directory's datasets instead of refusing."""

    def __post_init__(self) -> None:
        for name in ("users", "days", "wave_user_days"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.burn_in_days < 0:
            raise ValueError(f"burn_in_days must be >= 0, got {self.burn_in_days}")
        if self.shard_users is not None and self.shard_users < 1:
            raise ValueError(f"shard_users must be >= 1, got {self.shard_users}")

    @property
    def datasets(self) -> list[str]:
        return [n for n in schema.SCHEMAS if self.rct or n != "rct"]


@ray.remote
class ShardSimulator:
    """Simulates one shard of users day by day; returns one Arrow table per dataset."""

    def __init__(
        self,
        cfg: dict,
        first_user: int,
        n_users: int,
        opts: GenerateOptions,
        factory: Callable[[SimConfig], Policy] | None = None,
    ) -> None:
        sim_cfg = SimConfig.from_dict(cfg)
        self.rct = opts.rct
        policy = factory(sim_cfg) if factory else make_policy(opts.policy, sim_cfg)
        start = None
        if opts.burn_in_days:
            burn = make_policy(opts.burn_in_policy, sim_cfg)
            for log in simulate(sim_cfg, first_user, n_users, opts.burn_in_days, burn,
                                rct=opts.burn_in_rct):  # fmt: skip
                start = log.next_state
        self._days = simulate(sim_cfg, first_user, n_users, opts.days, policy, rct=opts.rct,
                              first_day=opts.burn_in_days, start=start)  # fmt: skip

    def step(self, n_days: int) -> tuple:
        """Simulate the next ``n_days``: (table per dataset..., SimSummary)."""
        parts: dict[str, list[pa.Table]] = {}
        summary = SimSummary()
        for _ in range(n_days):
            log = next(self._days)
            tables = day_tables(log, self.rct)
            for name, t in tables.items():
                parts.setdefault(name, []).append(t)
            summary = summary + SimSummary.of_day(log, {n: t.num_rows for n, t in tables.items()})
        # One chunk per table (one row group order to write, the same files from run to run).
        return (*(pa.concat_tables(ts).combine_chunks() for ts in parts.values()), summary)


def _layout(opts: GenerateOptions, block: int, cpus: int) -> tuple[list[tuple[int, int]], int]:
    """Shards (first user, n users) of whole blocks, and days per wave."""
    if opts.shard_users:
        per = max(block, math.ceil(opts.shard_users / block) * block)
    else:
        per = min(20_000, max(block, math.ceil(opts.users / cpus / block) * block))
    shards = [(f, min(per, opts.users - f)) for f in range(0, opts.users, per)]
    group_users = min(opts.users, per * cpus)
    days_per_wave = max(1, min(opts.days, opts.wave_user_days // max(group_users, 1)))
    return shards, days_per_wave


def _prepare_out(out: str, opts: GenerateOptions) -> None:
    for name in schema.SCHEMAS:
        d = storage.join(out, name)
        if storage.isdir(d) and storage.listdir(d):
            if not opts.overwrite:
                raise FileExistsError(
                    f"{d} already holds data; pass overwrite=True "
                    "(--overwrite) or choose another --out"
                )
            storage.rmtree(d)
    storage.makedirs(out)


def actor_cpus(cpus: int, n_actors: int) -> float:
    """CPUs each of ``n_actors`` simulator actors reserves on a cluster of ``cpus`` CPUs.

    Together they leave one whole CPU free: Ray Data's metadata and write tasks ask for one CPU
    each, and with none free they would wait for the actors forever (a deadlock on one CPU).
    """
    return min(1.0, max(cpus - 1, 0) / max(n_actors, 1))


def spec_mismatches(cfg: SimConfig, spec: AppSpec) -> list[str]:
    """Where the simulated world ``cfg`` departs from ``spec``, the app its datasets record
    (the PLPM spec): ``tau`` against ``dropoff_s``, ``n_ages`` against ``age``'s cardinality.
    Models trained on such a world and served read the spec's values (e.g. Serve's drop-off
    feature uses ``dropoff_s``), not the world's."""
    out = []
    if cfg.tau != spec.dropoff_s:
        out.append(f"tau is {cfg.tau:g} s but the recorded spec's dropoff_s is "
                   f"{spec.dropoff_s:g} s")  # fmt: skip
    ages = [f.cardinality for f in spec.features.profile if f.name == "age"]
    if ages and cfg.n_ages != ages[0]:
        out.append(f"n_ages is {cfg.n_ages} but the recorded spec's age cardinality is {ages[0]}")
    return out


def generate(
    cfg: SimConfig,
    opts: GenerateOptions,
    out: str,
    progress: Callable[[int], Any] | None = None,
    policy_factory: Callable[[SimConfig], Policy] | None = None,
) -> SimSummary:
    """Simulate ``opts.users`` × ``opts.days`` and write every dataset under ``out/<name>/``.

    ``policy_factory(sim_config)`` builds the policy that logs the data in each actor (e.g. an
    exploring KLAN from exported models, ``policy.registry.make_arm``); None: ``opts.policy``.
    ``progress(n)`` is called with the number of user-days finished after each wave. Returns the
    summary, also written with the resolved configs and the app spec (the PLPM spec) to
    ``out/manifest.json``. ``out`` may be a local path or a URI (``s3://``, ``gs://``: see
    ``glan_ray.storage``).
    """
    _prepare_out(out, opts)
    for m in spec_mismatches(cfg, plpm_spec()):
        logger.warning("simulate: %s; the datasets record the PLPM spec, so models trained on "
                       "them and served use the spec's value, not this world's", m)  # fmt: skip
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    shards, days_per_wave = _layout(opts, cfg.block_size, cpus)
    logger.info(
        "simulating %d users x %d days in %d shards, %d day(s) per wave",
        opts.users,
        opts.days,
        len(shards),
        days_per_wave,
    )
    names = opts.datasets
    write_task = ray.remote(num_cpus=0)(write_part)
    # Kept from when Ray Data wrote the files: later reads in this process (the pipeline's
    # stages at --parallel 1, the tests) stream in a fixed order, which the replay-equals-stream
    # checks of the trainers rely on.
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    total, wave = SimSummary(), 0
    for g in range(0, len(shards), cpus):
        group = shards[g : g + cpus]
        actors = [
            # @ray.remote made it an actor class; mypy types a decorated class as the class
            ShardSimulator.options(  # type: ignore[attr-defined]
                num_cpus=actor_cpus(cpus, len(group))
            ).remote(cfg.to_dict(), f, n, opts, policy_factory)
            for f, n in group
        ]
        chunks = [min(days_per_wave, opts.days - d) for d in range(0, opts.days, days_per_wave)]

        def launch(k: int, actors: list = actors) -> list:
            return [a.step.options(num_returns=len(names) + 1).remote(k) for a in actors]

        pending = launch(chunks[0])
        for i in range(len(chunks)):
            refs = pending
            if i + 1 < len(chunks):
                pending = launch(chunks[i + 1])  # simulate the next wave while this one writes
            writes = [
                # One file per (wave, shard, dataset), written by pyarrow in a task beside the
                # table: Ray Data's Parquet sink split a 142,722-row block into batches and wrote
                # them out of order (row groups 32768, 32768, 11650, 32768, 32768), so the
                # sessions no longer lined up with the trajectories (caught by label_hrm).
                write_task.remote(r[j], storage.join(
                    out, name, f"part-{wave:05d}-{g + k:05d}", f"{name}-0000-0.parquet"))
                for j, name in enumerate(names) for k, r in enumerate(refs)
            ]  # fmt: skip
            ray.get(writes)
            summaries = ray.get([r[-1] for r in refs])
            for s in summaries:
                total = total + s
            done = sum(s.user_days for s in summaries)
            logger.info(
                "wave %d: %d user-days, %d sessions", wave, done, sum(s.sessions for s in summaries)
            )
            if progress:
                progress(done)
            wave += 1
        for a in actors:
            ray.kill(a)
    storage.write_json(
        storage.join(out, MANIFEST),
        {
            "sim_config": cfg.to_dict(),
            "options": opts.__dict__,
            "summary": total.to_dict(),
            **spec_manifest(plpm_spec()),
        },  # the simulator's app (data.read.dataset_spec)
        indent=2,
    )
    return total
