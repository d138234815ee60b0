"""Refresh during the A/B (``ABConfig.refresh_every``, off by default): a refreshed arm's A/B
days run in segments of ``refresh_every`` days; after each segment (but the last) its models
are retrained on its own arm's logs of the A/B so far and the next segment serves the new ones,
as KLAN's deployment refreshed daily.

The A/B engine only plays and collects: each segment's shard tasks write their days' datasets
(``data.tables.day_tables``) under ``<refresh_dir>/<arm>/data`` and return their sums; the
retraining is the caller's ``Refresh`` callback (the training layer's
``glan_ray.train.refresh.refresh_arm``), which returns the models directory of the next
segment. The segments' per-user sums, per-day totals and activity are merged into one shard
result, exactly what an unrefreshed arm's single task returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from glan_ray.eval.lifetime import lt_units

logger = logging.getLogger(__name__)

Refresh = Callable[[str, int, str, str], str]
"""``refresh(arm, segment, models, data_dir) -> models``: retrain ``arm``'s models (directory
``models``) on the datasets under ``data_dir`` after segment ``segment`` (0-based); returns the
directory of the refreshed models."""


def segments(days: int, every: int) -> list[int]:
    """Lengths of the A/B segments: ``every`` days each, the last one shorter if need be."""
    return [min(every, days - s) for s in range(0, days, every)]


def merge_segments(parts: Sequence[dict[str, Any]], window: int) -> dict[str, Any]:
    """One shard result (``ab.run_shard``'s) of consecutive segments' results, each summed
    over all its days: per-user sums added, per-day totals and activity concatenated, LT's
    sums recomputed over the whole activity."""
    first = parts[0]
    units = {k: sum(p["units"][k] for p in parts) for k in first["units"]
             if k not in ("lt_active", "ever_active")}  # fmt: skip
    active = np.concatenate([p["active"] for p in parts], axis=1)
    units["lt_active"], units["ever_active"] = lt_units(active, window)
    daily = {k: np.concatenate([p["daily"][k] for p in parts]) for k in first["daily"]}
    return {"arm": first["arm"], "seed": first["seed"], "first": first["first"],
            "units": units, "daily": daily, "active": active,
            "latency_s": sum(p["latency_s"] for p in parts),
            "decisions": sum(p["decisions"] for p in parts)}  # fmt: skip


def run_refreshed(
    cfg: Any,
    arm: str,
    shards: list[tuple[int, tuple[int, int], Any]],
    task: Any,
    refresh: Refresh,
    refresh_dir: str,
) -> list[dict[str, Any]]:
    """Play ``arm``'s A/B days segment by segment, refreshing its models in between.

    ``shards``: (seed, (first user, users), start state or its ObjectRef) of every shard;
    ``task``: the remote ``run_shard``. Returns one merged result per shard, in ``shards``'
    order."""
    import ray

    from glan_ray import storage

    data_dir = storage.join(refresh_dir, arm, "data")
    models = cfg.models
    states = [s for _, _, s in shards]
    parts: list[list[dict[str, Any]]] = [[] for _ in shards]
    day = cfg.burn_in_days + cfg.aa_days
    lengths = segments(cfg.ab_days, cfg.refresh_every)
    for j, n_days in enumerate(lengths):
        refs = [
            task.remote(arm, models, cfg.sim, seed, first, n, n_days, cfg.options.get(arm),
                        external=cfg.external, variants=cfg.variants, start=states[i],
                        first_day=day, keep_state=True, log_dir=data_dir)
            for i, (seed, (first, n), _) in enumerate(shards)
        ]  # fmt: skip
        got = ray.get(refs)
        for i, r in enumerate(got):
            states[i] = r.pop("state")
            parts[i].append(r)
        day += n_days
        logger.info("refresh: %s segment %d/%d (%d days) played", arm, j + 1, len(lengths),
                    n_days)  # fmt: skip
        if j + 1 < len(lengths):
            models = refresh(arm, j, models, data_dir)
            logger.info("refresh: %s now serves %s", arm, models)
    return [merge_segments(p, cfg.window) for p in parts]


__all__ = ["Refresh", "merge_segments", "run_refreshed", "segments"]
