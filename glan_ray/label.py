"""Label the trajectories with HRM's session reward r̂ (GLAN eq. 28), for the DT's RTG.

The simulator writes ``sessions`` and ``trajectories`` as matching parts
(``<data>/<name>/part-WWWWW-SSSSS/``): the same user-days, sessions in the same order. Each part
pair becomes one Ray task that runs HRM on the part's sessions and rewrites the trajectories part
with ``reward_hrm`` filled (seconds, like ``reward``). Keys are checked row by row, so a part
whose sessions do not line up with its trajectories fails with the part's name instead of
mislabelling anything; every file is replaced atomically (write to a temporary name, then
rename; on an object store such as ``s3://`` an object is replaced whole), so an interrupted run
leaves each part either old or new, and a rerun finishes the job.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import torch

from glan_ray import storage
from glan_ray.apps import AppSpec
from glan_ray.data.features import SPECS, as_columns
from glan_ray.data.parts import matching_parts
from glan_ray.data.parts import read_part as _read
from glan_ray.data.read import dataset_spec
from glan_ray.models.app_check import check_export
from glan_ray.models.checkpoint import load_checkpoint
from glan_ray.models.exports import make_record
from glan_ray.models.hrm import hrm_reward
from glan_ray.schema import DatasetValidationError, conform

logger = logging.getLogger(__name__)


def _replace(table: pa.Table, path: str) -> None:
    """Write ``table`` over ``path`` atomically: a local file via a renamed temporary file; an
    object-store object is replaced whole when its upload completes."""
    if storage.is_uri(path):
        fs, inner = storage.filesystem(path)
        pq.write_table(table, inner, filesystem=fs)
        return
    tmp = path + ".tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def hrm_rewards(hrm_path: str, sessions: pa.Table) -> np.ndarray:
    """r̂ in seconds for every session row: (1 − ŷ_sw)·Σ_j T̂^j, with T̂ predicted in minutes."""
    model, normalizer, meta = load_checkpoint(hrm_path)
    if meta["model"] != "hrm":
        raise ValueError(f"{hrm_path} holds a '{meta['model']}' model, not HRM")
    app = make_record("hrm", meta.get("extra")).app  # the app the HRM was trained on
    f = normalizer(SPECS["hrm"].build(as_columns(sessions), app))
    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in f.items()}
    out = model(t["x_cat"], t["x_num"], t["page"])
    return (hrm_reward(out["dur"], out["p_sw"]) * 60.0).numpy().astype(np.float32)


def label_part(
    sessions_file: str, trajectories_file: str, hrm_path: str, app: AppSpec | None = None
) -> int:
    """Fill ``reward_hrm`` of one trajectories file from its sessions file (datasets of app
    ``app``; None: PLPM); returns sessions."""
    sess = conform(_read(sessions_file), "sessions", where=sessions_file, spec=app)
    traj = conform(_read(trajectories_file), "trajectories", where=trajectories_file, spec=app)
    n = traj.column("n_steps").to_numpy().astype(np.int64)
    for key in ("user_id", "day"):
        if not np.array_equal(np.repeat(traj.column(key).to_numpy(), n), sess.column(key)):
            raise DatasetValidationError(
                f"{sessions_file} and {trajectories_file}: column '{key}' does not line up "
                "(sessions must be the trajectories' sessions in order)"
            )
    starts = np.repeat(np.cumsum(n) - n, n)
    if not np.array_equal(np.arange(n.sum()) - starts, sess.column("session_idx").to_numpy()):
        raise DatasetValidationError(f"{sessions_file}: column 'session_idx' is not 0..n-1 per day")
    r = hrm_rewards(hrm_path, sess)  # (S,)
    offsets = pa.array(np.concatenate([[0], np.cumsum(n)]).astype(np.int32))
    col = pa.ListArray.from_arrays(offsets, pa.array(r, pa.float32()))
    i = traj.schema.get_field_index("reward_hrm")
    traj = traj.set_column(i, traj.schema.field(i), col)
    _replace(traj, trajectories_file)
    return int(n.sum())


def label_hrm(data: str, hrm_path: str, progress: Callable[[int, int], None] | None = None) -> int:
    """Label every trajectories part under ``data`` with HRM rewards; returns sessions labelled.
    An HRM trained on another app spec than the data's is refused (``models.app_check``)."""
    app = dataset_spec(data)
    check_export(hrm_path, app, f"the dataset {data}")
    parts = matching_parts(data, "sessions", "trajectories")
    task = ray.remote(num_cpus=0.5)(label_part)
    pending = [task.remote(sess, traj, hrm_path, app) for _, sess, traj in parts]
    total, done = 0, 0
    while pending:
        ready, pending = ray.wait(pending)
        total += sum(ray.get(ready))
        done += len(ready)
        if progress:
            progress(done, len(parts))
    logger.info("labelled %d sessions in %d parts with HRM rewards", total, len(parts))
    return total
