"""The decision log: what a deployment decided and saw, one typed record per event, and its
conversion into the training datasets (``glan-ray logs-to-datasets``).

Serve writes one record per applied event (``serving.state``: in the same store transaction as
the user's state, so a record exists iff its state change was applied and a replayed event id
writes nothing new); the simulator's days become the same records with ``from_day_log``:

- ``DayStart`` (endpoint ``day``): the day's features (the ``daily`` dataset's x, t and 30-day
  sequences, with the weekday), R̂₁, the policy and model versions, the fingerprint of the Serve
  app's spec;
- ``EntryRecord`` (``entry``): the observation the server built, hour, live count, today's
  consumption so far, π (the policy's distribution), the serving probabilities, the page, its
  propensity, the uniform it was drawn with, the exploration;
- ``SessionEndRecord`` (``end``): the feedback (per-page durations, views, switches, usage, exit
  page, and when the client sends them the page sequence and watch time), the drop-off flag, the
  reward r̂ and the next R̂.

On disk a log is Parquet files (``LOG_SCHEMA``: key columns + the record as JSON) under one
directory; a flush may write a record twice (it is deleted from the store only after its file
is durable), so ``read_log`` keeps the first record of each event key (user, endpoint, day,
event id). ``to_datasets`` builds ``daily``, ``sessions``, ``transitions`` and ``trajectories``
and validates them with ``glan_ray.schema``; a column a deployment cannot know (``value_true``)
is null, never invented. The datasets' manifest records the app spec of the Serve app that logged
them (``data.read.dataset_spec`` reads it back); a day start of another app is refused.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from glan_ray import schema, storage
from glan_ray.apps import AppSpec, plpm_spec
from glan_ray.data.read import MANIFEST, spec_manifest
from glan_ray.schema import N_PAGES, OBS_DIM, SEQ_LEN
from glan_ray.sim.config import SimConfig

logger = logging.getLogger(__name__)

DROPOFF_S = SimConfig.tau
"""τ (s): a landing page consumed for less is a drop-off (y_sw = 1), as in the simulator."""
DAY_KEYS = ("age", "region", "activity", "social_degree", "weekday",
            "usage_7d", "usage_30d", "sessions_7d", "sessions_30d",
            "page_dur_7d", "page_dur_14d", "page_entries_7d", "page_entries_14d",
            "seq_sessions", "seq_usage")  # fmt: skip
"""The day start's features: what the ``daily`` dataset needs besides its labels."""


@dataclass(frozen=True)
class DayStart:
    """``POST /users/{id}/day`` as applied."""

    endpoint: ClassVar[str] = "day"
    user_id: int
    day: int
    event_id: str
    features: dict[str, Any]
    """``DAY_KEYS``: profile, statistics, 30-day sequences (yesterday first), weekday."""
    last_exit: int | None = None
    """Page index the day starts from (None: unknown, e.g. a simulator user who stayed away)."""
    r1: float | None = None
    """R̂₁ (s); None where the policy has none (the simulator's non-GLAN policies)."""
    r1_source: str | None = None
    policy: str = ""
    models: dict[str, str] = field(default_factory=dict)
    """Model name -> ``path#content-hash`` of the checkpoint that served."""
    ts: float | None = None
    """Wall-clock time it was applied (Unix s); None for a simulated log."""
    app: str | None = None
    """``AppSpec.fingerprint()`` of the Serve app that applied it (None: a simulated log, or
    one written before specs were recorded: the PLPM app)."""


@dataclass(frozen=True)
class EntryRecord:
    """``POST /users/{id}/entry`` as applied: the decision."""

    endpoint: ClassVar[str] = "entry"
    user_id: int
    day: int
    event_id: str
    session_idx: int
    hour: float
    live_count: int
    today_dur: list[float]
    """Consumption per page (s) of today's sessions before this one."""
    obs: list[float]
    """The observation the policy saw (``schema.OBS_FEATURES``)."""
    page: int
    propensity: float
    """Probability of ``page`` under the serving distribution."""
    probs: list[float] | None = None
    """The serving distribution (None where the simulator logged only the propensity)."""
    pi: list[float] | None = None
    """The policy's own distribution π, before exploration."""
    u: float | None = None
    """The uniform the page was drawn with (inverse CDF of ``probs``)."""
    rtg: float | None = None
    policy: str = ""
    exploration: str = "greedy"
    models: dict[str, str] = field(default_factory=dict)
    ts: float | None = None


@dataclass(frozen=True)
class SessionEndRecord:
    """``POST /users/{id}/session_end`` as applied: the feedback and its reward."""

    endpoint: ClassVar[str] = "end"
    user_id: int
    day: int
    event_id: str
    session_idx: int
    page: int
    """The landing page (the entry's)."""
    page_durations_s: list[float]
    video_views: list[int]
    n_switches: int
    usage_time: float
    exit_page: int
    y_sw: int
    """Drop-off: the landing page consumed for less than ``DROPOFF_S``."""
    page_seq: list[int] | None = None
    """Pages in the order visited, the landing page first (None: not known)."""
    watch_time: float | None = None
    reward: float | None = None
    """r̂ the policy used (HRM, or the naive usage time); None in a simulated log."""
    next_rtg: float | None = None
    ts: float | None = None


Record = DayStart | EntryRecord | SessionEndRecord
KINDS: dict[str, type] = {c.endpoint: c for c in (DayStart, EntryRecord, SessionEndRecord)}

LOG_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), True),  # the store's sequence number (null: simulated)
        pa.field("endpoint", pa.string(), False),
        pa.field("user_id", pa.int64(), False),
        pa.field("day", pa.int32(), False),
        pa.field("event_id", pa.string(), False),
        pa.field("record", pa.string(), False),  # the record's fields as JSON
    ]
)


class DecisionLogError(ValueError):
    """A decision log that cannot be turned into datasets; names the record and field."""


def to_json(rec: Record) -> str:
    return json.dumps(
        {"endpoint": rec.endpoint, **dataclasses.asdict(rec)}, allow_nan=False,
        separators=(",", ":"),
    )  # fmt: skip


def from_dict(d: dict[str, Any]) -> Record:
    """The typed record of a decoded JSON object; unknown or missing fields name themselves."""
    d = dict(d)
    endpoint = d.pop("endpoint", None)
    cls = KINDS.get(endpoint)
    if cls is None:
        raise DecisionLogError(f"record: unknown endpoint {endpoint!r}; expected {sorted(KINDS)}")
    names = {f.name for f in dataclasses.fields(cls)}
    extra = sorted(set(d) - names)
    if extra:
        raise DecisionLogError(f"{endpoint} record: unknown field(s) {extra}")
    try:
        return cls(**d)
    except TypeError as e:
        raise DecisionLogError(f"{endpoint} record: {e}") from e


def from_json(raw: str) -> Record:
    return from_dict(json.loads(raw))


def key(rec: Record) -> tuple[int, str, int, str]:
    """The event key a reader de-duplicates on: (user, endpoint, day, event id). The day is part
    of it because Serve remembers a user's last 512 event ids only: an id reused much later is a
    new event there, and is one here."""
    return (rec.user_id, rec.endpoint, rec.day, rec.event_id)


# -- Parquet files --------------------------------------------------------------------------


def log_table(records: Iterable[Record], seqs: Iterable[int | None] | None = None) -> pa.Table:
    recs = list(records)
    seq = list(seqs) if seqs is not None else [None] * len(recs)
    return pa.Table.from_pydict(
        {
            "seq": seq,
            "endpoint": [r.endpoint for r in recs],
            "user_id": [r.user_id for r in recs],
            "day": [r.day for r in recs],
            "event_id": [r.event_id for r in recs],
            "record": [to_json(r) for r in recs],
        },
        schema=LOG_SCHEMA,
    )


def write_log_file(out_dir: str, table: pa.Table, name: str | None = None) -> str:
    """Write one log file under ``out_dir`` durably (written whole, fsynced and renamed into
    place locally; an object store's upload is atomic) and return its path."""
    if name is None:
        seqs = [s for s in table.column("seq").to_pylist() if s is not None]
        span = f"{min(seqs):012d}-{max(seqs):012d}-" if seqs else ""
        name = f"log-{span}{uuid.uuid4().hex[:8]}.parquet"
    path = storage.join(out_dir, name)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    if storage.is_uri(path):
        storage.write_bytes(path, buf.getvalue())
        return path
    os.makedirs(out_dir, exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    with open(tmp, "wb") as f:
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dfd = os.open(out_dir, os.O_RDONLY)
    try:
        os.fsync(dfd)  # the rename itself survives a crash
    finally:
        os.close(dfd)
    return path


def write_log(out_dir: str, records: Iterable[Record]) -> str:
    """Write records (e.g. ``from_day_log``'s) as one log file under ``out_dir``."""
    return write_log_file(out_dir, log_table(records))


def _log_files(path: str) -> list[str]:
    if storage.isdir(path):
        names = sorted(n for n in storage.listdir(path) if n.endswith(".parquet"))
        return [storage.join(path, n) for n in names]
    if storage.exists(path):
        return [path]
    raise FileNotFoundError(f"no decision log at {path} (a .parquet file or a directory of them)")


@dataclass
class LogRead:
    records: list[Record]
    files: int = 0
    rows: int = 0
    duplicates: int = 0
    """Rows whose event key was already read (a flush retried after a crash)."""


def read_log(path: str) -> LogRead:
    """Every record of the log at ``path`` (a file or a directory), first occurrence of each
    event key only, ordered by (store sequence where known, file, row)."""
    files = _log_files(path)
    rows: list[tuple[Any, ...]] = []
    for i, f in enumerate(files):
        t = pq.read_table(io.BytesIO(storage.read_bytes(f)))
        missing = [c for c in LOG_SCHEMA.names if c not in t.column_names]
        if missing:
            raise DecisionLogError(f"decision log file {f}: missing column(s) {missing}")
        for j, (seq, raw) in enumerate(
            zip(t.column("seq").to_pylist(), t.column("record").to_pylist(), strict=True)
        ):
            try:
                rec = from_json(raw)
            except (ValueError, TypeError) as e:
                raise DecisionLogError(f"decision log file {f}, row {j}: {e}") from e
            rows.append((seq if seq is not None else -1, i, j, rec))
    rows.sort(key=lambda r: r[:3])
    seen: set[tuple[int, str, int, str]] = set()
    out = []
    for *_, rec in rows:
        k = key(rec)
        if k not in seen:
            seen.add(k)
            out.append(rec)
    return LogRead(out, files=len(files), rows=len(rows), duplicates=len(rows) - len(out))


# -- the simulator's days as a log ----------------------------------------------------------


def from_day_log(log: Any, policy: str = "") -> Iterator[Record]:
    """The records of a simulated day (``glan_ray.sim.engine.DayLog``) as a deployment that
    served it would have written them: a day start for every user (active or not), then each
    user's entries and session ends in order. Event ids ``d<day>``, ``e<day>-<t>``,
    ``s<day>-<t>``. What the simulator does not log (π, the serving distribution, R̂₁, r̂) is
    None; nothing is invented (its hidden ``value_true`` is left out)."""
    users = log.users
    s = log.sessions
    by_row: dict[int, list[int]] = {}
    if s:
        for i, row in enumerate(s["row"].tolist()):
            by_row.setdefault(row, []).append(i)
    day, weekday = int(log.day), int(log.weekday)
    for row in range(len(users)):
        uid = int(users.user_id[row])
        feats: dict[str, Any] = {
            "age": int(users.age[row]),
            "region": int(users.region[row]),
            "activity": int(users.activity[row]),
            "social_degree": float(users.social_degree[row]),
            "weekday": weekday,
            **{k: np.asarray(v[row]).tolist() for k, v in log.stats.items()},
            "seq_sessions": np.asarray(log.seq_sessions[row]).tolist(),
            "seq_usage": np.asarray(log.seq_usage[row]).tolist(),
        }
        yield DayStart(uid, day, f"d{day}", feats, policy=policy)
        for i in by_row.get(row, []):
            t = int(s["session_idx"][i])
            a = int(s["action"][i])
            n = int(s["seq_len"][i])
            seq = [int(p) for p in s["page_seq"][i][:n]]
            yield EntryRecord(
                uid, day, f"e{day}-{t}", t, float(s["hour"][i]), int(s["live_count"][i]),
                np.asarray(s["today_dur"][i], dtype=np.float64).tolist(),
                np.asarray(s["obs"][i], dtype=np.float64).tolist(), a,
                float(s["propensity"][i]), policy=policy,
            )  # fmt: skip
            yield SessionEndRecord(
                uid, day, f"s{day}-{t}", t, a,
                np.asarray(s["dur"][i], dtype=np.float64).tolist(),
                [int(v) for v in s["views"][i]], n - 1, float(s["usage"][i]), seq[-1],
                int(s["y_sw"][i]), page_seq=seq, watch_time=float(s["watch"][i]),
            )  # fmt: skip


def page_sequence(landing: int, n_switches: int, exit_page: int) -> list[int] | None:
    """The pages a session visited in order, when its landing page, switches and exit page
    determine them with each page visited at most once (as in the simulator); None otherwise."""
    if n_switches == 0:
        return [landing] if exit_page == landing else None
    if exit_page == landing:
        return None
    if n_switches == 1:
        return [landing, exit_page]
    if n_switches == N_PAGES - 1:
        middle = ({*range(N_PAGES)} - {landing, exit_page}).pop()
        return [landing, middle, exit_page]
    return None


# -- datasets -------------------------------------------------------------------------------


@dataclass
class Conversion:
    """What ``to_datasets`` built and what it left out (nothing silently)."""

    tables: dict[str, pa.Table]
    summary: dict[str, int]
    spec: AppSpec = field(default_factory=plpm_spec)
    """The app spec of the Serve app that logged the records (the datasets' manifest)."""


@dataclass
class _UserDay:
    start: DayStart
    entries: dict[int, EntryRecord] = field(default_factory=dict)
    ends: dict[int, SessionEndRecord] = field(default_factory=dict)


def _where(rec: Record) -> str:
    return f"{rec.endpoint} event {rec.event_id!r} of user {rec.user_id} day {rec.day}"


def _group(records: Iterable[Record]) -> dict[tuple[int, int], _UserDay]:
    days: dict[tuple[int, int], _UserDay] = {}
    pending: list[EntryRecord | SessionEndRecord] = []
    for rec in records:
        if isinstance(rec, DayStart):
            k = (rec.user_id, rec.day)
            if k in days:
                raise DecisionLogError(
                    f"{_where(rec)}: a second day start (event_id {days[k].start.event_id!r} "
                    "already started it)"
                )
            missing = [f for f in DAY_KEYS if f not in rec.features]
            if missing:
                raise DecisionLogError(f"{_where(rec)}: features lack {missing}")
            days[k] = _UserDay(rec)
        else:
            pending.append(rec)
    for rec in pending:
        ud = days.get((rec.user_id, rec.day))
        if ud is None:
            raise DecisionLogError(f"{_where(rec)}: no day start for this user-day in the log")
        slot = ud.entries if isinstance(rec, EntryRecord) else ud.ends
        if rec.session_idx in slot:
            raise DecisionLogError(
                f"{_where(rec)}: session_idx {rec.session_idx} is already taken by event "
                f"{slot[rec.session_idx].event_id!r}"
            )
        if isinstance(rec, EntryRecord):
            ud.entries[rec.session_idx] = rec
        else:
            ud.ends[rec.session_idx] = rec
    return days


def _check_vector(rec: Record, name: str, value: Any, n: int) -> None:
    if value is None or len(value) != n:
        raise DecisionLogError(f"{_where(rec)}: field {name!r} must have {n} values")


def _check_app(days: dict[tuple[int, int], _UserDay], spec: AppSpec) -> None:
    """Every day start was applied by a Serve app of ``spec`` (or records none: PLPM)."""
    fp = spec.fingerprint()
    plpm = plpm_spec().fingerprint()
    bad = [ud.start for ud in days.values() if (ud.start.app or plpm) != fp]
    if bad:
        raise DecisionLogError(
            f"{_where(bad[0])}: field 'app': logged by a Serve app of spec fingerprint "
            f"{bad[0].app or plpm} ({len(bad)} day start(s) of {len(days)}), but the conversion "
            f"is for app {spec.name!r} (fingerprint {fp})"
        )
    if spec.n_pages != N_PAGES or spec.obs_dim != OBS_DIM:
        raise DecisionLogError(
            f"the decision log conversion writes the datasets of schema.py ({N_PAGES} pages, "
            f"{OBS_DIM} obs features); app {spec.name!r} has {spec.n_pages} and {spec.obs_dim}"
        )


def _sessions_of(ud: _UserDay) -> tuple[list[tuple[EntryRecord, SessionEndRecord]], int]:
    """The user-day's complete sessions in order, and 1 if its last entry has no end yet."""
    n_entries = len(ud.entries)
    if sorted(ud.entries) != list(range(n_entries)):
        raise DecisionLogError(
            f"{_where(ud.start)}: entries' session_idx {sorted(ud.entries)} are not "
            f"0..{n_entries - 1}"
        )
    for t, end in ud.ends.items():
        if t not in ud.entries:
            raise DecisionLogError(f"{_where(end)}: no entry with session_idx {t}")
        if end.page != ud.entries[t].page:
            raise DecisionLogError(
                f"{_where(end)}: field 'page' {end.page} is not its entry's page "
                f"{ud.entries[t].page}"
            )
    open_ = [t for t in ud.entries if t not in ud.ends]
    if open_ and open_ != [n_entries - 1]:
        raise DecisionLogError(
            f"{_where(ud.start)}: entries {open_} have no session end and are not the last entry"
        )
    out = []
    for t in range(n_entries - len(open_)):
        e, s = ud.entries[t], ud.ends[t]
        _check_vector(e, "obs", e.obs, OBS_DIM)
        _check_vector(e, "today_dur", e.today_dur, N_PAGES)
        _check_vector(s, "page_durations_s", s.page_durations_s, N_PAGES)
        _check_vector(s, "video_views", s.video_views, N_PAGES)
        out.append((e, s))
    return out, len(open_)


def _fixed(rows: list[Any], dtype: pa.DataType, n: int) -> pa.Array:
    flat = pa.array([x for r in rows for x in r], type=dtype)
    return pa.FixedSizeListArray.from_arrays(flat, n)


def _build(name: str, cols: dict[str, Any]) -> pa.Table:
    sch = schema.schema_for(name)
    arrays = []
    for f in sch:
        v = cols[f.name]
        arrays.append(v if isinstance(v, pa.Array) else pa.array(v, type=f.type))
    table = pa.Table.from_arrays(arrays, schema=sch)
    return schema.conform(table, name, "the decision log")  # validated like any other dataset


def _user_cols(starts: list[DayStart]) -> dict[str, Any]:
    f = [s.features for s in starts]
    return {
        "user_id": [s.user_id for s in starts],
        "day": [s.day for s in starts],
        "weekday": [x["weekday"] for x in f],
        **{k: [x[k] for x in f] for k in ("age", "region", "activity", "social_degree")},
    }


def _stat_cols(starts: list[DayStart]) -> dict[str, Any]:
    f = [s.features for s in starts]
    out: dict[str, Any] = {k: [x[k] for x in f] for k in ("usage_7d", "usage_30d", "sessions_7d",
                                                          "sessions_30d")}  # fmt: skip
    for k in ("page_dur_7d", "page_dur_14d", "page_entries_7d", "page_entries_14d"):
        out[k] = _fixed([x[k] for x in f], pa.float32(), N_PAGES)
    return out


def to_datasets(records: Iterable[Record], spec: AppSpec | None = None) -> Conversion:
    """``daily``, ``sessions``, ``transitions``, ``trajectories`` of a decision log, logged by a
    Serve app of ``spec`` (None: the PLPM app, Serve's today); a day start that records another
    app's fingerprint raises ``DecisionLogError``.

    A session is an entry and its session end. An entry without one (a session in progress when
    the log was taken; only a user-day's last entry can be one) is no session: it is left out of
    ``sessions`` (its feedback is unknown), but it is the next state of the session before it in
    ``transitions`` (``done`` false, ``next_obs`` its observation, as the policy saw it), and its
    user-day is left out of ``daily`` and ``trajectories`` (the day's labels are not known).
    Both are counted in the summary (``open_entries``, ``open_days``). Inconsistent records (an
    entry without its day start, a session end without its entry, a page that differs) raise
    ``DecisionLogError`` naming the event and field. Rows are ordered by (day, user, session).
    """
    spec = spec or plpm_spec()
    days = _group(records)
    _check_app(days, spec)
    order = sorted(days, key=lambda k: (k[1], k[0]))
    sess: list[tuple[DayStart, EntryRecord, SessionEndRecord]] = []
    trans_next: list[tuple[list[float], bool]] = []
    full: list[tuple[DayStart, list[tuple[EntryRecord, SessionEndRecord]]]] = []
    open_entries = 0
    for k in order:
        ud = days[k]
        done_sessions, n_open = _sessions_of(ud)
        open_entries += n_open
        for i, (e, s) in enumerate(done_sessions):
            sess.append((ud.start, e, s))
            if i + 1 < len(done_sessions):
                trans_next.append((done_sessions[i + 1][0].obs, False))
            elif n_open:
                trans_next.append((ud.entries[len(done_sessions)].obs, False))
            else:
                trans_next.append((e.obs, True))
        if not n_open:
            full.append((ud.start, done_sessions))
    if open_entries:
        logger.info(
            "decision log: %d entr%s without a session end (in progress): not sessions, their "
            "user-days left out of daily and trajectories", open_entries,
            "y" if open_entries == 1 else "ies",
        )  # fmt: skip
    starts = [st for st, _, _ in sess]
    entries = [e for _, e, _ in sess]
    ends = [s for _, _, s in sess]
    page_seq = []
    for s in ends:
        seq = s.page_seq if s.page_seq is not None else page_sequence(s.page, s.n_switches,
                                                                     s.exit_page)  # fmt: skip
        page_seq.append(seq)
    sessions = _build(
        "sessions",
        {
            **_user_cols(starts),
            "session_idx": [e.session_idx for e in entries],
            **_stat_cols(starts),
            "hour": [e.hour for e in entries],
            "entries_today": [e.session_idx for e in entries],
            "live_count": [e.live_count for e in entries],
            "today_dur": _fixed([e.today_dur for e in entries], pa.float32(), N_PAGES),
            "video_views": _fixed([s.video_views for s in ends], pa.int16(), N_PAGES),
            "page_seq": pa.array(page_seq, type=pa.list_(pa.int8())),
            "n_switches": [s.n_switches for s in ends],
            "action": [e.page for e in entries],
            "propensity": [e.propensity for e in entries],
            "dur": _fixed([s.page_durations_s for s in ends], pa.float32(), N_PAGES),
            "y_sw": [s.y_sw for s in ends],
            "usage_time": [s.usage_time for s in ends],
            "watch_time": [s.watch_time for s in ends],
            "value_true": pa.nulls(len(ends), pa.float32()),
            "obs": _fixed([e.obs for e in entries], pa.float32(), OBS_DIM),
        },
    )
    transitions = _build(
        "transitions",
        {
            "user_id": [e.user_id for e in entries],
            "day": [e.day for e in entries],
            "weekday": [st.features["weekday"] for st in starts],
            "session_idx": [e.session_idx for e in entries],
            "obs": _fixed([e.obs for e in entries], pa.float32(), OBS_DIM),
            "action": [e.page for e in entries],
            "reward": [s.usage_time for s in ends],
            "next_obs": _fixed([o for o, _ in trans_next], pa.float32(), OBS_DIM),
            "done": [d for _, d in trans_next],
            "hour": [e.hour for e in entries],
            "entries_today": [e.session_idx for e in entries],
            "propensity": [e.propensity for e in entries],
        },
    )
    with_sessions = [(st, ss) for st, ss in full if ss]
    t_starts = [st for st, _ in with_sessions]

    def lists(get: Any, dtype: pa.DataType) -> pa.Array:
        return pa.array([[get(e, s) for e, s in ss] for _, ss in with_sessions],
                        type=pa.list_(dtype))  # fmt: skip

    trajectories = _build(
        "trajectories",
        {
            **_user_cols(t_starts),
            "n_steps": [len(ss) for _, ss in with_sessions],
            "obs": lists(lambda e, s: e.obs, schema.TRAJECTORIES.field("obs").type.value_type),
            "actions": lists(lambda e, s: e.page, pa.int8()),
            "hours": lists(lambda e, s: e.hour, pa.float32()),
            "reward": lists(lambda e, s: s.usage_time, pa.float32()),
            "reward_hrm": pa.nulls(len(with_sessions), pa.list_(pa.float32())),
            "dropoff": lists(lambda e, s: s.y_sw, pa.int8()),
            "propensity": lists(lambda e, s: e.propensity, pa.float32()),
            "value_true": pa.nulls(len(with_sessions), pa.list_(pa.float32())),
            "y_wt": [float(np.sum([s.usage_time for _, s in ss])) for _, ss in with_sessions],
            "y_se": [len(ss) for _, ss in with_sessions],
        },
    )
    d_starts = [st for st, _ in full]
    daily = _build(
        "daily",
        {
            **_user_cols(d_starts),
            **_stat_cols(d_starts),
            "seq_sessions": _fixed([st.features["seq_sessions"] for st in d_starts],
                                   pa.float32(), SEQ_LEN),
            "seq_usage": _fixed([st.features["seq_usage"] for st in d_starts],
                                pa.float32(), SEQ_LEN),
            "seq_dt": _fixed([list(range(1, SEQ_LEN + 1))] * len(d_starts), pa.int16(), SEQ_LEN),
            "is_active": [bool(ss) for _, ss in full],
            "y_wt": [float(np.sum([s.usage_time for _, s in ss])) if ss else 0.0
                     for _, ss in full],
            "y_se": [len(ss) for _, ss in full],
        },
    )  # fmt: skip
    summary = {
        "user_days": len(days),
        "sessions": sessions.num_rows,
        "open_entries": open_entries,
        "open_days": len(days) - len(full),
        "daily": daily.num_rows,
        "trajectories": trajectories.num_rows,
        "transitions": transitions.num_rows,
        "page_seq_unknown": sum(p is None for p in page_seq),
        "watch_time_unknown": sum(s.watch_time is None for s in ends),
    }
    tables = {"daily": daily, "sessions": sessions, "trajectories": trajectories,
              "transitions": transitions}  # fmt: skip
    return Conversion(tables, summary, spec)


def write_datasets(conv: Conversion, out: str, overwrite: bool = False, **manifest: Any) -> None:
    """Each table as ``out/<name>/part-00000/<name>-0000.parquet`` (the simulator's layout, which
    ``data.read.read_dataset`` reads) and ``out/manifest.json`` with the summary and the app spec
    (``data.read.dataset_spec``)."""
    for name in conv.tables:
        d = storage.join(out, name)
        if storage.isdir(d) and storage.listdir(d):
            if not overwrite:
                raise FileExistsError(f"{d} already holds data; pass --overwrite or another --out")
            storage.rmtree(d)
    for name, table in conv.tables.items():
        buf = io.BytesIO()
        pq.write_table(table, buf)
        storage.write_bytes(storage.join(out, name, "part-00000", f"{name}-0000.parquet"),
                            buf.getvalue())  # fmt: skip
    storage.write_json(
        storage.join(out, MANIFEST),
        {"source": "decision_log", "summary": conv.summary, **manifest, **spec_manifest(conv.spec)},
        indent=2,
    )


__all__ = [
    "LOG_SCHEMA",
    "DayStart",
    "EntryRecord",
    "SessionEndRecord",
    "from_day_log",
    "read_log",
    "to_datasets",
    "write_datasets",
    "write_log",
]  # fmt: skip
