"""The one-command pipeline: simulate -> supervised models -> HRM labels -> RL policies -> A/B ->
report, every stage on Ray, every output under one run directory.

Each finished stage writes ``<run>/stages/<stage>.json`` (wall time, peak memory, outputs); a
rerun skips stages that have their marker, so a killed run resumes at the first unfinished stage
(that stage starts over, replacing its partial outputs). ``--from STAGE`` forces a stage and the
ones after it to run again. The run directory may be a URI (``s3://bucket/run``): markers,
datasets, model exports, Ray Train results and the report all go there (``glan_ray.storage``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from glan_ray import storage

logger = logging.getLogger(__name__)

STAGES = (
    "simulate",
    "diagnose",
    "train_lrtg",
    "train_hrm",
    "train_isp",
    "train_am",
    "label_hrm",
    "train_cql",
    "train_cql_static",
    "train_cql_hist",
    "train_dt",
    "train_dt_naive",
    "evaluate",
)
STAGE_COST = {
    "simulate": 7.8, "diagnose": 46.1, "train_lrtg": 55.1, "train_hrm": 27.4, "train_isp": 20.9,
    "train_am": 27.4, "label_hrm": 3.7, "train_cql": 27.4, "train_cql_static": 23.6,
    "train_cql_hist": 29.9, "train_dt": 30.0, "train_dt_naive": 29.1, "evaluate": 67.7,
}  # fmt: skip
GEN1_STAGES = (
    "simulate_gen1",
    "gen1_train_lrtg",
    "gen1_train_hrm",
    "gen1_copy_isp",
    "gen1_train_am",
    "gen1_label_hrm",
    "gen1_train_cql",
    "gen1_train_dt",
    "gen1_train_dt_naive",
    "evaluate_gen1",
)
"""With ``--incumbent ARM``, generation 1 after ``STAGES`` (generation 0): the incumbent, from
generation 0's models, serves the training users for the days after theirs with exploration
(``simulate_gen1``: ``data_gen1/``); generation 1's models train on that log (``models_gen1/``;
KLAN-ISP's uplift model is generation 0's, copied: it learns from the RCT, not from the
incumbent's traffic); ``evaluate_gen1`` runs the A/B with the greedy incumbent as control
(``gen1/report.md``)."""
VARIANT_STAGES = ("train_dt_act", "train_dt_target")
"""Stages of issue 29's DT variants, run only where ``only`` names them (the world sweep's
cells): ``train_dt_act`` trains ``dt_act``, the DT with ACT's advantage-conditioned tokens from
the run's ``cql`` critic (the ``glan_act`` arm), ``train_dt_target`` ``dt_target``, the DT
asked for a per-state target (``glan_target``)."""
APP_STAGES = ("ingest", "train_lrtg", "train_hrm", "train_isp", "train_am", "label_hrm",
              "train_cql", "train_dt", "ope")  # fmt: skip
"""The stages of a run on an app's own raw events (``PipelineConfig.events``; docs/ingest.md):
``ingest`` (``glan_ray.ingest``) instead of ``simulate``, the models GLAN and KLAN need, and
``ope`` instead of the simulated A/B: the learned policies' values estimated on the logged
sessions (``eval.logged``), in ``report.md`` with the stages' times. ``train_isp`` is skipped,
saying why, when the events flag no randomised days."""
ALL_STAGES = STAGES + GEN1_STAGES + VARIANT_STAGES + ("ingest", "ope")
STAGE_COST.update({
    "simulate_gen1": 15.1, "gen1_train_lrtg": 86.2, "gen1_train_hrm": 45.2, "gen1_copy_isp": 0.1,
    "gen1_train_am": 50.5, "gen1_label_hrm": 5.9, "gen1_train_cql": 30.4, "gen1_train_dt": 46.1,
    "gen1_train_dt_naive": 34.9, "evaluate_gen1": 103.9, "train_dt_act": 30.0,
    "train_dt_target": 30.0, "ingest": 10.0, "ope": 20.0,
})  # fmt: skip
"""Relative cost of each stage: its wall seconds in a demo run with one stage at a time
(generation 0's: 2026-12-07, 2 cores, idle, the working tree after issue 28's budgets by
convergence; generation 1's: 2026-12-03 with ``--incumbent klan``, a helper's tests beside it).
``eta_s`` scales them by the speed measured in the current run."""


DEPENDS: dict[str, tuple[str, ...]] = {
    "simulate": (),
    "diagnose": (),  # simulates its own log of the world, with the hidden state
    **{f"train_{m}": ("simulate",) for m in ("lrtg", "hrm", "isp", "am", "cql", "cql_static")},
    "train_cql_hist": ("simulate",),  # writes data/transitions_hist, then trains
    "label_hrm": ("train_hrm",),  # rewrites the trajectories with HRM rewards
    "train_dt": ("label_hrm",),
    "train_dt_naive": ("label_hrm",),  # reads the trajectories label_hrm rewrites
    "evaluate": STAGES[:-1],
    "simulate_gen1": ("train_isp", "train_am", "train_cql"),  # the incumbent's models
    **{f"gen1_train_{m}": ("simulate_gen1",) for m in ("lrtg", "hrm", "am", "cql")},
    "gen1_copy_isp": ("train_isp",),
    "gen1_label_hrm": ("gen1_train_hrm",),
    "gen1_train_dt": ("gen1_label_hrm",),
    "gen1_train_dt_naive": ("gen1_label_hrm",),
    "evaluate_gen1": (*(s for s in GEN1_STAGES[:-1]), "train_dt"),  # + generation 0's GLAN
    "train_dt_act": ("label_hrm", "train_cql"),  # its critic; label_hrm rewrites its input
    "train_dt_target": ("label_hrm",),
    "ingest": (),
    "ope": ("train_lrtg", "train_hrm", "train_isp", "train_am", "train_cql", "train_dt"),
}
"""The stages whose outputs each stage reads: it starts once they are done."""


def critical_first(stages: list[str]) -> list[str]:
    """``stages`` ordered by the longest chain of ``STAGE_COST`` from each to the end of the
    pipeline (its own cost and its dependents'), longest first: the order in which ready stages
    get a free slot, so the DT trainings start before the cheaper stages that could wait."""
    tail: dict[str, float] = {}
    for stage in reversed(ALL_STAGES):
        after = [tail[s] for s in ALL_STAGES if stage in DEPENDS[s]]
        tail[stage] = STAGE_COST.get(stage, 0.0) + max(after, default=0.0)
    return sorted(stages, key=lambda s: (-tail[s], ALL_STAGES.index(s)))


def eta_s(ran: dict[str, float], remaining: list[str], width: int = 1) -> float | None:
    """Seconds left: the stages that ran in this run took ``ran`` (stage -> wall s) against
    their ``STAGE_COST``; the ``remaining`` stages are expected at the same ratio, run
    ``width`` at a time as their dependencies finish (stages of neither list count as done).
    None before any stage has run (nothing measured yet)."""
    spent = sum(ran.values())
    cost = sum(STAGE_COST[s] for s in ran)
    if not ran or cost <= 0:
        return None
    scale = spent / cost
    # the scheduler's list schedule of the remaining stages on ``width`` slots
    end: dict[str, float] = {}
    slots = [0.0] * max(1, width)
    todo = list(remaining)
    while todo:
        ready_at = {s: max((end.get(d, 0.0) for d in DEPENDS[s] if d in remaining),
                           default=0.0) for s in todo if all(d in end or d not in remaining
                                                             for d in DEPENDS[s])}  # fmt: skip
        i = min(range(len(slots)), key=slots.__getitem__)  # the first free slot
        now = max(slots[i], min(ready_at.values()))
        stage = critical_first([s for s, t in ready_at.items() if t <= now])[0]
        todo.remove(stage)
        end[stage] = slots[i] = now + scale * STAGE_COST[stage]
    return max(end.values(), default=0.0)


@dataclass(frozen=True)
class Preset:
    """Sizes of one pipeline run."""

    users: int
    """Users simulated for training (with RCT days for KLAN-ISP)."""
    days: int
    """Days simulated for training."""
    epochs: int
    """Epochs of each supervised model."""
    cql_iterations: int
    dt_iterations: int
    updates_per_iteration: int
    """Gradient updates per RLlib ``train()`` (CQL and DT alike)."""
    ab_users: int
    """Users per arm of the A/B (the same users in every arm)."""
    ab_days: int
    """Days of the A/B phase (the headline is its last 7 days, or all if fewer)."""
    ab_seeds: tuple[int, ...]
    ab_aa_days: int
    """Days of the A/A phase before the A/B (every bucket under the control)."""
    ab_burn_in_days: int
    """Days the A/B's users live under the control before the A/A phase (existing users)."""
    train: dict[str, Any] = field(default_factory=dict)
    """Extra supervised TrainConfig fields for every model (e.g. a smaller batch)."""
    gen1_days: int | None = None
    """Days the incumbent serves the training users in generation 1 (``--incumbent``); None:
    ``days``."""
    parallel: int = 1
    """Stages at once by default (``PipelineConfig.parallel``). On 2 CPUs the demo takes 5:35
    with 2 against 6:43 with 1 (one stage's Ray Train start-up and Ray Data waits overlap the
    other's compute; before issue 28's cuts it was 499 s against 502 s), while the tiny run's
    short stages lose more to the stage tasks' start than they overlap (251 s against 170 s)."""
    patience: int | None = None
    """Budgets by convergence: every learner stops when its held-out criterion has not improved
    for this many epochs (supervised, ``TrainConfig.patience``) or ``train()`` calls (CQL and
    the DT, ``RLTrainConfig.patience``); the epochs and iterations above are then the budgets.
    None: fixed budgets. Each stage's ``stages/<stage>.json`` says where it stopped and why."""


PRESETS: dict[str, Preset] = {
    "tiny": Preset(300, 4, 1, 2, 2, 20, 300, 2, (0,), 1, 2, {"batch_size": 256}, patience=2),
    "demo": Preset(3000, 14, 4, 32, 1, 300, 2000, 7, (0, 1), 7, 30, parallel=2, patience=2),
    "small": Preset(10_000, 14, 6, 20, 20, 400, 5000, 14, (0, 1, 2), 14, 30, patience=2),
    "full": Preset(100_000, 28, 8, 50, 50, 500, 20_000, 42, (0, 1, 2, 3, 4), 14, 30, patience=2),
}
"""``demo`` is the README's main job (docs/pipeline.md has its stage times). Every learner stops
on its held-out criterion within its budget (``patience``): the demo's CQLs stop near 4,200 of
their 9,600 updates, where their held-out Q level stops rising (over 3 draws KLAN gains 1.6
points of usage on 2,400 updates: ``bench/results/klan_budget.json``); its DTs train 300
updates, where their held-out loss is lowest (``bench/dt_budget.py``); ``tiny`` is the CI
smoke run."""


@dataclass(frozen=True)
class PipelineConfig:
    run: str = "runs/demo"
    """Run directory: a local path, or on a cluster a shared mount or URI (``s3://``, ``gs://``)."""
    preset: str = "demo"
    """Sizes: tiny, demo, small or full."""
    seed: int = 0
    """Simulator seed of the training population."""
    first_stage: str | None = None
    """Rerun from this stage even if it finished before."""
    use_gpu: bool = False
    """GPUs for the Ray Train workers and the RLlib learners."""
    incumbent: str | None = None
    """Run generation 1 (``GEN1_STAGES``) with this learned arm of generation 0 as the deployed
    system (``policy.registry.LEARNED_ARMS``; the papers: ``klan``); None: generation 0 only."""
    incumbent_explore: str = "epsilon=0.1"
    """How the incumbent explores while it collects generation 1's data (``policy.explore``;
    ``DEPLOY_DEFAULT``). The A/B's control is the greedy incumbent."""
    world: str = "default"
    """The simulated world (``sim.worlds.WORLDS``): ``default``, or ``premise`` where GLAN's
    premises hold. Training data, generation 1 and the A/B all live in it; the ``diagnose``
    stage measures its premises and the report opens with them. A run directory keeps the
    world it was started with."""
    parallel: int | None = None
    """Stages run at once, each in its own Ray task as soon as the stages it reads are done
    (``DEPENDS``); 1 runs them one after another in this process, in ``STAGES`` order. None:
    the preset's (``Preset.parallel``)."""
    only: tuple[str, ...] | None = None
    """Run only these stages (each with every stage it reads, ``DEPENDS``), e.g. the training
    stages without ``evaluate`` (``glan-ray sweep-worlds`` plays its own A/B); None: all."""
    events: str | None = None
    """An app's raw page-visit events (Parquet or CSV, a file or directory, local or URI;
    docs/ingest.md): the run ingests them instead of simulating and evaluates its policies on
    them (``APP_STAGES``); None: the simulator's world."""
    spec: str | None = None
    """The app spec (app.yaml) of ``events``; required with them."""
    users: str | None = None
    """A table of the users' profile fields keyed by user_id, for ``events`` without them."""

    @property
    def app_mode(self) -> bool:
        """Whether this run is on an app's own events (``events``)."""
        return self.events is not None

    def depends(self, stage: str) -> tuple[str, ...]:
        """The stages ``stage`` reads in this run (``DEPENDS``; an app run's datasets come from
        ``ingest``)."""
        deps = DEPENDS[stage]
        return tuple("ingest" if d == "simulate" else d for d in deps) if self.app_mode else deps

    def __post_init__(self) -> None:
        if (self.events is None) != (self.spec is None):
            raise ValueError("events and spec go together: --events PATH --spec app.yaml")
        if self.events is not None:
            from glan_ray.apps import load_spec

            load_spec(self.spec)  # type: ignore[arg-type]  # a bad spec fails here, naming it
            if self.incumbent is not None or self.world != "default":
                raise ValueError("--incumbent and --world are the simulator's; a run on "
                                 "--events has no simulator")  # fmt: skip
        elif self.users is not None:
            raise ValueError("users: only with --events (the users of an app's events)")
        if self.preset in PRESETS and self.parallel is None:
            object.__setattr__(self, "parallel", PRESETS[self.preset].parallel)
        if self.parallel is not None and self.parallel < 1:
            raise ValueError(f"parallel must be >= 1; got {self.parallel}")
        from glan_ray.sim.worlds import world_overrides

        world_overrides(self.world)  # an unknown world raises, listing the worlds
        if self.preset not in PRESETS:
            raise ValueError(f"preset: unknown {self.preset!r}; expected one of {list(PRESETS)}")
        if self.only is not None:
            full = self._all_stages
            unknown = [x for x in self.only if x not in full]
            if unknown:
                raise ValueError(f"only: unknown stage(s) {unknown}; stages: {full}")
            missing = sorted({d for x in self.only for d in self.depends(x)} - set(self.only))
            if missing:
                raise ValueError(f"only: the stages {list(self.only)} read {missing}; "
                                 "add them")  # fmt: skip
        if self.first_stage is not None and self.first_stage not in self.stages:
            raise ValueError(f"--from: unknown stage {self.first_stage!r}; stages: {self.stages}")
        if self.incumbent is not None:
            from glan_ray.policy.explore import Exploration
            from glan_ray.policy.registry import LEARNED_ARMS

            if self.incumbent not in LEARNED_ARMS:
                raise ValueError(f"incumbent: {self.incumbent!r} is not a learned arm; expected "
                                 f"one of {', '.join(LEARNED_ARMS)}")  # fmt: skip
            Exploration.parse(self.incumbent_explore)

    @property
    def _all_stages(self) -> tuple[str, ...]:
        """``STAGES``, ``GEN1_STAGES`` with an incumbent, and ``VARIANT_STAGES`` where
        ``only`` names one."""
        if self.app_mode:
            return APP_STAGES
        gen: tuple[str, ...] = STAGES + GEN1_STAGES if self.incumbent else STAGES
        if self.only is not None and set(self.only) & set(VARIANT_STAGES):
            gen += VARIANT_STAGES
        return gen

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages of this run: ``_all_stages``, with ``only`` those of them."""
        full = self._all_stages
        return full if self.only is None else tuple(x for x in full if x in self.only)

    @property
    def sizes(self) -> Preset:
        return PRESETS[self.preset]

    def path(self, *parts: str) -> str:
        return storage.join(self.run, *parts)


def _peak_mib() -> float:
    """Peak USS (MiB) now of this process and every Ray process of this machine (best effort)."""
    try:
        import psutil
    except ImportError:  # pragma: no cover
        return float("nan")
    me = psutil.Process()
    procs = [me, *me.children(recursive=True)]
    for p in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        if "ray::" in cmd or "raylet" in cmd or "gcs_server" in cmd:
            procs.append(p)
    total, seen = 0, set()
    for p in procs:
        if p.pid in seen:
            continue
        seen.add(p.pid)
        try:
            total += p.memory_full_info().uss
        except (psutil.Error, OSError):
            continue
    return total / 2**20


class _MemorySampler:
    """Samples ``_peak_mib`` in a background thread while a stage runs."""

    def __init__(self, every_s: float = 1.0) -> None:
        import threading

        self.peak, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)

    def _run(self, every_s: float) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _peak_mib())
            self._stop.wait(every_s)

    def __enter__(self) -> _MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _stage_fns(cfg: PipelineConfig) -> dict[str, Callable[[], dict[str, Any]]]:
    s = cfg.sizes
    data, models = cfg.path("data"), cfg.path("models")
    data1, models1 = cfg.path("data_gen1"), cfg.path("models_gen1")

    def simulate() -> dict[str, Any]:
        from glan_ray.data.generate import GenerateOptions, generate
        from glan_ray.sim.worlds import world_config

        opts = GenerateOptions(users=s.users, days=s.days, rct=True, overwrite=True)
        summary = generate(world_config(cfg.world, seed=cfg.seed), opts, data)
        return {"out": data, "world": cfg.world, "summary": summary.format()}

    def diagnose() -> dict[str, Any]:
        from glan_ray.diagnose.report import diagnose_world, write

        users = min(s.users, 3000)
        smoke = cfg.preset == "tiny"  # a smoke run: the figures mean little at 300 users
        d = diagnose_world(cfg.world, seed=cfg.seed, users=users, days=6 if smoke else 10,
                           consistency_splits=1 if smoke else 3,
                           calibration_users=min(users, 2000),
                           calibration_days=4 if smoke else 14,
                           epochs=3 if smoke else None,
                           # the stage's own log: `glan-ray diagnose --world` reads 20,000
                           # users for the consistency's target, minutes the demo can't spare
                           consistency_users=users)  # fmt: skip
        with storage.staged_dir(cfg.path("diagnosis")) as local:
            write(d, local)
        return {"out": cfg.path("diagnosis"), "world": cfg.world, "targets": d.targets}

    def ingest() -> dict[str, Any]:
        from glan_ray.apps import load_spec
        from glan_ray.ingest import ingest as ingest_events

        assert cfg.events is not None and cfg.spec is not None, "APP_STAGES need both"
        res = ingest_events(load_spec(cfg.spec), cfg.events, data, users=cfg.users,
                            overwrite=True)  # fmt: skip
        return {"out": data, "events": cfg.events, "spec": cfg.spec, **res.summary()}

    def ope() -> dict[str, Any]:
        from glan_ray.data.read import dataset_spec
        from glan_ray.eval.logged import LoggedOPEConfig, run_logged_ope, write_ope
        from glan_ray.eval.ope import FQEConfig

        ope_cfg = LoggedOPEConfig()
        if cfg.preset == "tiny":  # a smoke run: its figures mean little
            ope_cfg = LoggedOPEConfig(bootstrap=50, fqe=FQEConfig(iterations=4,
                                                                  steps_per_iteration=50))
        values, log = run_logged_ope(data, models, dataset_spec(data), ope_cfg,
                                     progress=lambda p: logger.info("ope: %s", p))  # fmt: skip
        table = write_ope(cfg.path("ope"), values, log, ope_cfg)
        out = write_app_report(cfg, table)
        return {"out": out, "ope": cfg.path("ope", "ope.json"),
                "policies": {v.policy: v.dr.value for v in values}}  # fmt: skip

    def supervised(name: str, data: str = data, models: str = models) -> Callable[[], dict]:
        def run() -> dict[str, Any]:
            import torch

            from glan_ray.train.config import train_config
            from glan_ray.train.objectives import VAL_METRIC
            from glan_ray.train.trainer import fit

            # the worker's torch threads: this stage's share of the cores (Ray's default, one
            # per reserved CPU, leaves a 2-core machine's second core idle)
            if name == "isp" and cfg.app_mode and not storage.exists(storage.join(data, "rct")):
                why = ("no randomised days in the events (no 'treatment' column): KLAN-ISP "
                       "learns from them; the klan policy is left out of the evaluation")
                logger.warning("train_isp skipped: %s", why)
                return {"skipped": why}
            fields = {"data": data, "out": models, "epochs": s.epochs, "use_gpu": cfg.use_gpu,
                      "torch_threads": torch.get_num_threads()}  # fmt: skip
            if s.patience:
                fields["patience"] = s.patience
            res = fit(name, train_config(name, {**fields, **s.train}))
            metric = VAL_METRIC[name][0]
            return {"out": res.checkpoint, "metrics": {k: v for k, v in res.metrics.items()
                                                       if k.startswith("val/")},
                    "epochs": len(res.history), "stop": res.stop,
                    metric: [h.get(metric) for h in res.history]}  # fmt: skip

        return run

    def label(data: str = data, models: str = models) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            from glan_ray.label import label_hrm

            return {"sessions": label_hrm(data, storage.join(models, "hrm"))}

        return run

    def rl(algo: str, name: str, iterations: int, updates: int, data: str = data,
           models: str = models, **extra: Any):  # fmt: skip
        def run() -> dict[str, Any]:
            from glan_ray.rllib.launch import RLTrainConfig, fit_rl

            flat = {"data": data, "out": models, "iterations": iterations, "name": name,
                    "updates_per_iteration": updates, "use_gpu": cfg.use_gpu,
                    "patience": s.patience, **extra}  # fmt: skip
            res = fit_rl(RLTrainConfig.from_flat(algo, flat))
            return {"out": res.export, "metrics": res.metrics, "updates_per_s": res.updates_per_s,
                    "iterations": res.iterations, "stop": res.stop}  # fmt: skip

        return run

    def evaluate() -> dict[str, Any]:
        from glan_ray.eval.ab import ABConfig, run_ab
        from glan_ray.eval.publish import publish_evaluation
        from glan_ray.policy.registry import ALIASES, ARMS, COMMAND_ARMS, CRITIC_GUIDED_ARMS

        # the critic-guided arms join once their λ is tuned on validation users (issue 29);
        # the command heads' DTs are trained only where ``only`` names their stages
        skip = {*ALIASES, *CRITIC_GUIDED_ARMS, *COMMAND_ARMS}
        ab = ABConfig(arms=tuple(a for a in ARMS if a not in skip), users=s.ab_users,
                      ab_days=s.ab_days, aa_days=s.ab_aa_days, burn_in_days=s.ab_burn_in_days,
                      seeds=s.ab_seeds, models=models, world=cfg.world)  # fmt: skip
        def progress(done: int, total: int) -> None:
            if done == total or done % max(1, total // 10) == 0:
                logger.info("evaluate: %d/%d A/B tasks done", done, total)

        return {"out": publish_evaluation(cfg.run, run_ab(ab, progress))[0]}

    def simulate_gen1() -> dict[str, Any]:
        from glan_ray.data.generate import GenerateOptions, generate
        from glan_ray.policy.registry import incumbent_factory
        from glan_ray.sim.worlds import world_config

        sim = world_config(cfg.world, seed=cfg.seed)
        assert cfg.incumbent is not None, "GEN1_STAGES run only with an incumbent"
        factory, name = incumbent_factory(cfg.incumbent, models, sim, cfg.incumbent_explore)
        opts = GenerateOptions(users=s.users, days=s.gen1_days or s.days, policy=name,
                               burn_in_days=s.days, burn_in_rct=True, overwrite=True)  # fmt: skip
        summary = generate(sim, opts, data1, policy_factory=factory)
        return {"out": data1, "policy": name, "summary": summary.format()}

    def copy_isp() -> dict[str, Any]:
        src, dst = storage.join(models, "isp"), storage.join(models1, "isp")
        if storage.exists(dst):
            storage.rmtree(dst)
        storage.upload_dir(storage.local_copy(src), dst)
        return {"out": dst, "copied_from": src}

    def evaluate_gen1() -> dict[str, Any]:
        from glan_ray.eval.ab import ABConfig, run_ab
        from glan_ray.eval.publish import publish_evaluation
        from glan_ray.policy.registry import GLAN_ARMS, MODEL_FREE

        inc = cfg.incumbent
        variants = {
            "incumbent": {"arm": inc, "models": models},
            "incumbent_explore": {"arm": inc, "models": models,
                                  "options": {"explore": cfg.incumbent_explore}},
            "glan_gen0": {"arm": "glan", "models": models},
        }  # fmt: skip
        arms = ("incumbent", "incumbent_explore", *GLAN_ARMS, "klan", "glan_gen0", *MODEL_FREE)
        ab = ABConfig(arms=arms, control="incumbent", users=s.ab_users, ab_days=s.ab_days,
                      aa_days=s.ab_aa_days, burn_in_days=s.ab_burn_in_days, seeds=s.ab_seeds,
                      models=models1, variants=variants, world=cfg.world)  # fmt: skip

        def progress(done: int, total: int) -> None:
            if done == total or done % max(1, total // 10) == 0:
                logger.info("evaluate_gen1: %d/%d A/B tasks done", done, total)

        learned = {a: data1 for a in (*GLAN_ARMS, "klan")}
        learned.update({a: data for a in ("incumbent", "incumbent_explore", "glan_gen0")})
        storage.makedirs(cfg.path("gen1"))
        storage.write_json(cfg.path("gen1", "learned_from.json"), learned, indent=1)
        out = publish_evaluation(cfg.path("gen1"), run_ab(ab, progress))[0]
        who = {data1: "generation 1: the incumbent's log", data: "generation 0: the heuristic's"}
        rows = [f"| {a} | {who[d]} (`{d}`) |" for a, d in learned.items()]
        text = storage.read_text(out) + (
            f"\n## What each learned arm learned from\n\nIncumbent: {inc} of generation 0, "
            f"exploring by {cfg.incumbent_explore} while it logged generation 1 (greedy in the "
            "A/B).\n\n| arm | trained on |\n|---|---|\n" + "\n".join(rows) + "\n"
        )
        storage.write_text(out, text)
        return {"out": out, "learned_from": learned}

    u = s.updates_per_iteration
    fns = {
        "ingest": ingest,
        "ope": ope,
        "simulate": simulate,
        "diagnose": diagnose,
        **{f"train_{m}": supervised(m) for m in ("lrtg", "hrm", "isp", "am")},
        "label_hrm": label(),
        "train_cql": rl("cql", "cql", s.cql_iterations, u),
        "train_cql_static": rl("cql", "cql_static", s.cql_iterations, u, static_alpha=True),
        # klan_iit_hist: the same CQL over obs + the history features (data/transitions_hist)
        "train_cql_hist": rl("cql", "cql_hist", s.cql_iterations, u, history=True),
        "train_dt": rl("dt", "dt", s.dt_iterations, u),
        "train_dt_naive": rl("dt", "dt_naive", s.dt_iterations, u, reward_column="reward"),
        "train_dt_act": rl(
            "dt", "dt_act", s.dt_iterations, u, act_critic=storage.join(models, "cql")
        ),
        "train_dt_target": rl("dt", "dt_target", s.dt_iterations, u, state_target=True),
        "evaluate": evaluate,
    }
    if not cfg.incumbent:
        return fns
    return {
        **fns,
        "simulate_gen1": simulate_gen1,
        **{f"gen1_train_{m}": supervised(m, data1, models1) for m in ("lrtg", "hrm", "am")},
        "gen1_copy_isp": copy_isp,
        "gen1_label_hrm": label(data1, models1),
        "gen1_train_cql": rl("cql", "cql", s.cql_iterations, u, data1, models1),
        "gen1_train_dt": rl("dt", "dt", s.dt_iterations, u, data1, models1),
        "gen1_train_dt_naive": rl(
            "dt", "dt_naive", s.dt_iterations, u, data1, models1, reward_column="reward"
        ),
        "evaluate_gen1": evaluate_gen1,
    }


def write_app_report(cfg: PipelineConfig, ope_table: str) -> str:
    """``report.md`` of a run on an app's events: the app, the stages' times and outputs, and
    the logged-data OPE table (no simulator arm: nothing here was played)."""
    from glan_ray.apps import load_spec

    assert cfg.spec is not None, "an app run has a spec"
    spec = load_spec(cfg.spec)
    rows = []
    for stage in APP_STAGES[:-1]:
        marker = stage_marker(cfg, stage)
        if storage.exists(marker):
            rec = storage.read_json(marker)
            note = rec.get("skipped") or rec.get("stop") or ""
            rows.append(f"| {stage} | {rec['wall_s']:.1f} | {rec['peak_mib']:.0f} | {note} |")
    text = "\n".join([
        f"# glan-ray on app {spec.name!r}: {cfg.events}", "",
        "```", spec.summary(), "```", "",
        f"Preset {cfg.preset}; datasets in `{cfg.path('data')}`, models in "
        f"`{cfg.path('models')}`.", "",
        "## Stages", "",
        "| stage | wall s | peak MiB | note |", "|---|---:|---:|---|", *rows, "",
        "## Off-policy evaluation on the logged sessions", "",
        "Estimated from the log with the logged propensities (`glan_ray.eval.logged`); no "
        "policy here was played. A policy that rarely agrees with the logged pages has a small "
        "ESS and wide intervals: trust its DR and FQE columns more than IPS.", "",
        storage.read_text(ope_table),
    ])  # fmt: skip
    path = cfg.path("report.md")
    storage.write_text(path, text)
    return path


def stage_marker(cfg: PipelineConfig, stage: str) -> str:
    return cfg.path("stages", f"{stage}.json")


def _run_stage(cfg: PipelineConfig, stage: str) -> dict[str, Any]:
    """Run one stage; its record (wall time, peak memory of the machine, outputs)."""
    t0 = time.perf_counter()
    with _MemorySampler() as mem:
        out = _stage_fns(cfg)[stage]()
    return {"stage": stage, "wall_s": round(time.perf_counter() - t0, 1),
            "peak_mib": round(mem.peak, 1), **out}  # fmt: skip


def _stage_task(cfg: PipelineConfig, stage: str, cwd: str, threads: int, level: int) -> dict:
    """``_run_stage`` in a Ray worker: the driver's working directory (relative run paths),
    ``threads`` torch threads (its share of the CPUs), and the driver's log level, the stage's
    log going to ``<run>/stages/<stage>.log`` when the run is local."""
    import torch

    torch.set_num_threads(threads)
    before, root = os.getcwd(), logging.getLogger()
    os.chdir(cwd)
    handler = None
    if not storage.is_uri(cfg.run):
        handler = logging.FileHandler(cfg.path("stages", f"{stage}.log"), mode="w")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    old_level = root.level
    root.setLevel(level)
    try:
        return _run_stage(cfg, stage)
    finally:
        root.setLevel(old_level)
        if handler is not None:
            root.removeHandler(handler)
            handler.close()
        os.chdir(before)


def run_pipeline(
    cfg: PipelineConfig, on_stage: Callable[[str, str, dict[str, Any]], None] | None = None
) -> list[dict[str, Any]]:
    """Run every unfinished stage, ``cfg.parallel`` at a time as their ``DEPENDS`` finish;
    returns one record per stage (run or skipped) in ``cfg.stages`` order. A failed stage stops the
    run: stages still running are cancelled (they start over on a rerun) and its error raised."""
    if cfg.use_gpu:  # before the simulate stage, not at the first training stage
        from glan_ray.runtime import require_gpus

        require_gpus("--use-gpu", 1, "one per Ray Train worker and RLlib learner")
    storage.makedirs(cfg.path("stages"))
    storage.write_json(
        cfg.path("pipeline.json"), {"config": asdict(cfg), "preset": asdict(cfg.sizes)}, indent=1
    )
    stages = cfg.stages
    forced = stages[stages.index(cfg.first_stage) :] if cfg.first_stage else ()
    done_sim = stage_marker(cfg, "simulate")
    if "simulate" not in forced and storage.exists(done_sim):
        was = storage.read_json(done_sim).get("world", "default")
        if was != cfg.world:
            raise ValueError(f"world: {cfg.run} was simulated in world {was!r}, not "
                             f"{cfg.world!r}; use another --out or --from simulate")  # fmt: skip
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for stage in stages:
        marker = stage_marker(cfg, stage)
        if stage not in forced and storage.exists(marker):
            records[stage] = {**storage.read_json(marker), "status": "skipped (done)"}
            if on_stage:
                on_stage(stage, "skipped", records[stage])
        else:
            todo.append(stage)

    def finish(rec: dict[str, Any]) -> None:
        storage.write_json(stage_marker(cfg, rec["stage"]), rec, indent=1, default=str)
        records[rec["stage"]] = {**rec, "status": "ran"}  # the marker is written atomically
        if on_stage:
            on_stage(rec["stage"], "done", rec)

    parallel = cfg.parallel
    assert parallel is not None, "PipelineConfig.__post_init__ sets the preset's"
    if parallel == 1:
        for stage in todo:
            if on_stage:
                on_stage(stage, "start", {})
            finish(_run_stage(cfg, stage))
        return [records[s] for s in stages]

    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1))
    task = ray.remote(num_cpus=0)(_stage_task)  # its trainers and learners reserve the CPUs
    args = (os.getcwd(), max(1, cpus // parallel), logging.getLogger().getEffectiveLevel())
    running: dict[Any, str] = {}
    while todo or running:
        for stage in critical_first([s for s in todo
                                     if all(d in records for d in cfg.depends(s))]):  # fmt: skip
            if len(running) >= parallel:
                break
            todo.remove(stage)
            if on_stage:
                on_stage(stage, "start", {})
            running[task.remote(cfg, stage, *args)] = stage
        if not running:  # pragma: no cover - DEPENDS is acyclic and complete
            raise RuntimeError(f"stages {todo} wait on stages that never run")
        [ref], _ = ray.wait(list(running), num_returns=1)
        del running[ref]
        try:
            rec = ray.get(ref)
        except BaseException:
            for other in running:
                ray.cancel(other, force=True)
            raise
        finish(rec)
    return [records[s] for s in stages]


def serve_models(cfg: PipelineConfig, host: str = "127.0.0.1", port: int = 8000) -> str:
    """Start the Serve app (``glan_ray.serving``) on this run's exported models; returns its URL.

    Needs a finished ``train_dt`` stage (the DT export); L-RTG and HRM are used when present.
    Runs on the connected Ray; ``ray.serve.shutdown()`` stops it.
    """
    from ray import serve

    from glan_ray.serving.app import build_app

    if not storage.exists(stage_marker(cfg, "train_dt")):
        raise FileNotFoundError(f"--serve: no trained DT in {cfg.run} (stage train_dt not done)")
    args = {"models": cfg.path("models")}
    if not storage.is_uri(cfg.path("serve")):  # user state beside the run's models
        args["state_store"] = "sqlite://" + os.path.abspath(cfg.path("serve", "state.sqlite3"))
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(args), name="glan", route_prefix="/")
    return f"http://{host}:{port}"
