"""The sessions the premise diagnostics read, as one typed record of flat arrays.

Built from the simulator's day logs (``from_day_logs``: with each session's hidden state) or
from any ``sessions`` dataset in the schema (``from_dataset``: simulated, a deployment's
``logs-to-datasets`` output, a team's logs), read with Ray Data. Rows are sorted by user-day
and session index; ``group`` numbers the user-days 0..G-1.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from glan_ray.schema import N_PAGES, OBS_DIM

logger = logging.getLogger(__name__)


@dataclass
class SessionFrame:
    """M sessions of G user-days."""

    user_id: np.ndarray  # (M,) int64
    day: np.ndarray  # (M,) int64
    group: np.ndarray  # (M,) int64 user-day number 0..G-1
    session_idx: np.ndarray  # (M,) int64 index within the day (0, 1, ... without gaps)
    obs: np.ndarray  # (M, OBS_DIM) float32
    action: np.ndarray  # (M,) int64 landing page
    propensity: np.ndarray  # (M,) float64 logged propensity of the action
    dur: np.ndarray  # (M, 3) float64 consumption per page (s)
    y_sw: np.ndarray  # (M,) float64 drop-off flag
    usage: np.ndarray  # (M,) float64 session usage time (s)
    exit_page: np.ndarray  # (M,) int64 page the session exited from, -1 where not known
    latent: np.ndarray | None = None  # (M, L) hidden state (simulator only)

    def __len__(self) -> int:
        return len(self.action)

    @property
    def n_days(self) -> int:
        return int(self.group.max()) + 1 if len(self) else 0

    @property
    def day_length(self) -> np.ndarray:
        """(M,) sessions in each row's user-day."""
        return np.bincount(self.group, minlength=self.n_days)[self.group]

    @property
    def landing_dur(self) -> np.ndarray:
        """(M,) seconds on the landing page."""
        return self.dur[np.arange(len(self)), self.action]

    @property
    def another_today(self) -> np.ndarray:
        """(M,) 1.0 where another session of the same day follows."""
        return (self.session_idx < self.day_length - 1).astype(np.float64)

    @property
    def remaining_return(self) -> np.ndarray:
        """(M,) usage of this session and the rest of its day (s): the return-to-go."""
        csum = np.r_[np.cumsum(self.usage[::-1])[::-1], 0.0]  # (M + 1,) suffix sums
        last = np.flatnonzero(np.r_[self.group[1:] != self.group[:-1], True])  # (G,) day ends
        return csum[:-1] - csum[last[self.group] + 1]

    def usage_at_lag(self, lag: int) -> np.ndarray:
        """(M,) usage of the session ``lag`` sessions later the same day (0 if none)."""
        j = np.arange(len(self)) + lag
        ok = (self.session_idx + lag) < self.day_length
        jj = np.minimum(j, len(self) - 1)
        return np.where(ok, self.usage[jj], 0.0)

    def users(self) -> np.ndarray:
        return np.unique(self.user_id)

    def select_users(self, users: np.ndarray) -> SessionFrame:
        """The sessions of ``users`` (whole days), renumbered."""
        keep = np.isin(self.user_id, users)
        return _renumber(self, keep)


def _renumber(f: SessionFrame, keep: np.ndarray) -> SessionFrame:
    _, group = np.unique(f.group[keep], return_inverse=True)
    return SessionFrame(
        user_id=f.user_id[keep],
        day=f.day[keep],
        group=group.astype(np.int64),
        session_idx=f.session_idx[keep],
        obs=f.obs[keep],
        action=f.action[keep],
        propensity=f.propensity[keep],
        dur=f.dur[keep],
        y_sw=f.y_sw[keep],
        usage=f.usage[keep],
        exit_page=f.exit_page[keep],
        latent=None if f.latent is None else f.latent[keep],
    )


def _sorted(cols: dict[str, np.ndarray], latent: np.ndarray | None = None) -> SessionFrame:
    order = np.lexsort((cols["session_idx"], cols["day"], cols["user_id"]))
    c = {k: v[order] for k, v in cols.items()}
    key = c["user_id"] * 100_000 + c["day"]
    _, group = np.unique(key, return_inverse=True)
    idx = c["session_idx"]
    # session_idx must count 0, 1, ... within each day: the history is the rows before
    first = np.r_[True, group[1:] != group[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(len(idx)), 0))
    expected = np.arange(len(idx)) - start
    if not np.array_equal(idx, expected):
        bad = int((idx != expected).sum())
        raise ValueError(
            f"sessions: column 'session_idx' must number each user-day's sessions 0, 1, 2, ... "
            f"without gaps or repeats; {bad} rows do not"
        )
    latent = None if latent is None else latent[order]
    return SessionFrame(group=group.astype(np.int64), latent=latent, **c)


def from_day_logs(logs: list, users_offset: int = 0) -> SessionFrame:
    """Sessions of simulator ``DayLog``s (simulated with ``keep_latent=True`` for ``latent``)."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in _FIELDS}
    has_latent = True
    for log in logs:
        s = log.sessions
        if not s:
            continue
        rows = s["row"]
        seq_len = s["seq_len"]
        exit_ = s["page_seq"][np.arange(len(rows)), seq_len - 1].astype(np.int64)
        a = s["action"].astype(np.int64)
        vals = {
            "user_id": log.users.user_id[rows].astype(np.int64) + users_offset,
            "day": np.full(len(rows), log.day, dtype=np.int64),
            "session_idx": s["session_idx"].astype(np.int64),
            "obs": s["obs"].astype(np.float32),
            "action": a,
            "propensity": s["propensity"].astype(np.float64),
            "dur": s["dur"].astype(np.float64),
            "y_sw": s["y_sw"].astype(np.float64),
            "usage": s["usage"].astype(np.float64),
            "exit_page": exit_,
        }
        for k, v in vals.items():
            parts[k].append(v)
        if "latent" in s:
            parts["latent"].append(s["latent"])
        else:
            has_latent = False
    cols = {k: np.concatenate(v) for k, v in parts.items() if k != "latent"}
    latent = np.concatenate(parts["latent"]) if has_latent and parts["latent"] else None
    return _sorted(cols, latent)


_FIELDS = (
    "user_id",
    "day",
    "session_idx",
    "obs",
    "action",
    "propensity",
    "dur",
    "y_sw",
    "usage",
    "exit_page",
    "latent",
)


def from_dataset(path: str, max_user_days: int | None = None, seed: int = 0) -> SessionFrame:
    """Sessions of the ``sessions`` dataset at ``path`` (a run/data directory or the dataset's
    own), read and validated with Ray Data. ``max_user_days`` keeps a random sample of whole
    users (about that many user-days) so the diagnostics fit in memory on any log size."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import ray

    from glan_ray.data.read import read_dataset

    cols = ["user_id", "day", "session_idx", "obs", "action", "propensity", "dur", "y_sw"]
    cols += ["usage_time", "page_seq"]
    ds = read_dataset(path, "sessions").select_columns(cols)
    t = pa.concat_tables(ray.get(ds.to_arrow_refs()))
    if max_user_days is not None:
        days = np.unique(np.stack([t["user_id"].to_numpy(), t["day"].to_numpy()], 1), axis=0).shape[
            0
        ]
        if days > max_user_days:
            users = np.unique(t["user_id"].to_numpy())
            rng = np.random.default_rng(seed)
            size = max(1, int(len(users) * max_user_days / days))
            take = rng.choice(users, size=size, replace=False)
            t = t.filter(pc.is_in(t["user_id"], pa.array(take)))
            logger.info("diagnose: sampled %d of %d users (~%d user-days)", len(take), len(users),
                        max_user_days)  # fmt: skip
    n = t.num_rows

    def fixed(name: str, width: int, dtype: type) -> np.ndarray:
        return t[name].combine_chunks().flatten().to_numpy().astype(dtype).reshape(n, width)

    page_seq = t["page_seq"].to_pylist()
    exit_ = np.array([p[-1] if p else -1 for p in page_seq], dtype=np.int64)
    unknown = int((exit_ < 0).sum())
    if unknown:
        logger.info(
            "diagnose: %d of %d sessions have no page_seq (exit page not known)", unknown, n
        )
    return _sorted(
        {
            "user_id": t["user_id"].to_numpy().astype(np.int64),
            "day": t["day"].to_numpy().astype(np.int64),
            "session_idx": t["session_idx"].to_numpy().astype(np.int64),
            "obs": fixed("obs", OBS_DIM, np.float32),
            "action": t["action"].to_numpy().astype(np.int64),
            "propensity": t["propensity"].to_numpy().astype(np.float64),
            "dur": fixed("dur", N_PAGES, np.float64),
            "y_sw": t["y_sw"].to_numpy().astype(np.float64),
            "usage": t["usage_time"].to_numpy().astype(np.float64),
            "exit_page": exit_,
        }
    )


__all__ = ["SessionFrame", "from_dataset", "from_day_logs"]
