"""The retraining of a refresh during the A/B (``ABConfig.refresh_every``, ``eval.refresh``).

``refresh_arm`` retrains the model an arm's refresh owns (``REFRESHED``) on the datasets the
arm's own A/B days wrote, starting from a copy of the models the arm served, and returns the
new models directory. KLAN's arms retrain their IIT (the discrete CQL, on ``transitions``);
its ISP (trained on RCT days, which an A/B arm does not run) and AM keep their training. GLAN's
arms retrain their DT on ``trajectories``: with HRM's rewards (labelled first with the served
HRM) or the naive ones for the w/o-HRM arms. A greedy arm's days all have propensity 1 and the
DT leaves such days out (``skip_deterministic_days``), so a refreshed GLAN arm must explore.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from glan_ray import storage

logger = logging.getLogger(__name__)

REFRESHED: dict[str, tuple[str, str, dict[str, Any]]] = {
    "klan": ("cql", "cql", {}),
    "klan_iit": ("cql", "cql", {}),
    "cql": ("cql", "cql", {}),
    "cql_static": ("cql", "cql_static", {"static_alpha": True}),
    "glan": ("dt", "dt", {}),
    "glan_no_lrtg": ("dt", "dt", {}),
    "glan_no_hrm": ("dt", "dt_naive", {"reward_column": "reward"}),
    "dt": ("dt", "dt_naive", {"reward_column": "reward"}),
}
"""Arm -> (RLlib algorithm, the export it retrains, training overrides)."""


@dataclass(frozen=True)
class RefreshTrainer:
    """``ABConfig``'s refresh callback (``eval.refresh.Refresh``): retrains into
    ``<out>/<arm>/models-<segment>``."""

    out: str
    """Directory of the refreshed models (e.g. ``RUN/refresh``)."""
    cql_iterations: int = 8
    """RLlib ``train()`` calls of a CQL retraining (the demo preset's budget: a refreshed CQL
    trains as long as the one it replaces)."""
    dt_iterations: int = 1
    """RLlib ``train()`` calls of a DT retraining (the demo preset's)."""
    updates_per_iteration: int = 300
    """Gradient updates per call (the demo preset's, DT and CQL alike)."""
    patience: int | None = None
    """Stop each retraining on its held-out criterion (``RLTrainConfig.patience``; the
    preset's); the iterations above are then budgets. None: fixed budgets."""
    use_gpu: bool = False
    base_data: str | None = None
    """The datasets the arm's models were trained on (e.g. ``RUN/data``, HRM-labelled): a
    refresh then trains on them and the arm's A/B logs together, as a daily refresh adds the new
    days to what the model knew; None: on the arm's own logs alone. Local paths only (the union
    is a directory of links to both's files)."""
    warm_start: bool = False
    """Start each retraining from the served model's weights (``RLTrainConfig.init_from``), as
    a refresh that continues the deployed model; False: from a fresh initialisation."""
    with_logs: bool = True
    """False (with ``base_data``): retrain on ``base_data`` alone, leaving the arm's logs out,
    the control that sizes the retraining noise a refresh's figure includes."""

    def __post_init__(self) -> None:
        for name in ("cql_iterations", "dt_iterations", "updates_per_iteration"):
            if getattr(self, name) < 1:
                raise ValueError(f"refresh: {name} must be >= 1; got {getattr(self, name)}")
        if not self.with_logs and not self.base_data:
            raise ValueError("refresh: with_logs=False (--refresh-control) needs base_data "
                             "(--refresh-base-data): else there is no data")  # fmt: skip

    def __call__(self, arm: str, segment: int, models: str, data_dir: str) -> str:
        return refresh_arm(arm, segment, models, data_dir, self)


def _copy_models(src: str, dst: str) -> None:
    """Copy every export (a directory with ``model.pt``) of ``src`` into ``dst``."""
    if storage.isdir(dst):
        storage.rmtree(dst)
    for name in storage.listdir(src):
        if storage.exists(storage.join(src, name, "model.pt")):
            storage.upload_dir(storage.local_copy(storage.join(src, name)),
                               storage.join(dst, name))  # fmt: skip


def _union(base: str, logs: str | None, name: str, out: str) -> str:
    """A run directory whose dataset ``name`` holds every file of ``base``'s and ``logs``'s
    (None: ``base``'s alone), as links under ``base-``/``log-`` prefixed part directories."""
    import os

    roots = [("base", base)] + ([("log", logs)] if logs is not None else [])
    if any(storage.is_uri(r) for _, r in roots) or storage.is_uri(out):
        raise ValueError("refresh: base_data needs local paths (the union links files)")
    if os.path.isdir(out):
        storage.rmtree(out)
    for tag, root in roots:
        src_root = os.path.join(root, name)
        if not os.path.isdir(src_root):
            raise FileNotFoundError(f"refresh: no {name} dataset at {src_root}")
        for d, _, files in os.walk(src_root):
            rel = os.path.relpath(d, src_root)
            for f in files:
                if f.endswith(".parquet"):
                    part = f"{tag}-{rel.replace(os.sep, '-')}" if rel != "." else tag
                    os.makedirs(os.path.join(out, name, part), exist_ok=True)
                    os.symlink(os.path.abspath(os.path.join(d, f)),
                               os.path.join(out, name, part, f))  # fmt: skip
    return out


def _explored_days(data_dir: str) -> int:
    """User-days of the arm's logs with a page served at probability < 1."""
    import numpy as np

    from glan_ray.data.read import read_dataset

    ds = read_dataset(data_dir, "trajectories", validate=False).select_columns(["propensity"])
    rows = ds.take_all()
    return int(sum(np.min(r["propensity"]) < 1.0 for r in rows if len(r["propensity"])))


def refresh_arm(arm: str, segment: int, models: str, data_dir: str, t: RefreshTrainer) -> str:
    """Retrain ``arm``'s refreshed model on ``data_dir`` from a copy of ``models``; returns the
    copy's directory."""
    from glan_ray.rllib.launch import RLTrainConfig, fit_rl

    if arm not in REFRESHED:
        raise ValueError(f"refresh: arm {arm!r} has no model to refresh; expected one of "
                         f"{', '.join(REFRESHED)}")  # fmt: skip
    algo, name, extra = REFRESHED[arm]
    out = storage.join(t.out, arm, f"models-{segment + 1}")
    _copy_models(models, out)
    if algo == "dt":
        if _explored_days(data_dir) == 0:
            raise ValueError(
                f"refresh: arm {arm!r} logged no user-day with a propensity below 1 (a greedy "
                f"arm): its DT has nothing to learn from; let it explore (ABConfig.options, "
                f"e.g. --arm-option {arm}.explore=epsilon=0.1)"
            )
        if extra.get("reward_column", "reward_hrm") == "reward_hrm":
            from glan_ray.label import label_hrm

            label_hrm(data_dir, storage.join(models, "hrm"))
    train_on = data_dir
    if t.base_data:
        dataset = "trajectories" if algo == "dt" else "transitions"
        train_on = _union(t.base_data, data_dir if t.with_logs else None, dataset,
                          storage.join(t.out, arm, f"train-{segment + 1}"))  # fmt: skip
    iterations = t.dt_iterations if algo == "dt" else t.cql_iterations
    if t.warm_start:
        extra = {**extra, "init_from": storage.join(models, name)}
    flat = {"data": train_on, "out": out, "iterations": iterations, "name": name,
            "updates_per_iteration": t.updates_per_iteration, "use_gpu": t.use_gpu,
            "patience": t.patience, **extra}  # fmt: skip
    res = fit_rl(RLTrainConfig.from_flat(algo, flat))
    logger.info("refresh: %s segment %d: %s retrained on %s -> %s", arm, segment, name, train_on,
                res.export)  # fmt: skip
    return out


__all__ = ["REFRESHED", "RefreshTrainer", "refresh_arm"]
