"""In-process profile of the colocated app's request path: entry + session end, no Ray, no HTTP.

Builds the ingress (``colocate_models``: DT and HRM in-process, the SQLite store in a temporary
file) and drives it the way ``bench/serve_load.py`` does (closed-loop workers at concurrency
``--levels``, each owning users, entry -> session end, a new day every ``--sessions-per-day``
sessions), calling the endpoint methods directly on parsed bodies. Around that it does what
FastAPI does per request (the JSON body parsed and validated into the pydantic model; the answer
validated by its response model and encoded), so the figures are the app's own request-path CPU
without Serve's HTTP server.

Reported per level: entry + end pairs/s, the process's CPU per pair (all threads: the SQLite
store's thread included), and per part (CPU ms per pair: the calling thread's CPU time inside
the part, robust to other work on the machine, unlike wall-clock figures; nested parts
are inside their parent, e.g. ``build_obs`` inside ``entry_obs``): body parse + validation,
answer encoding, the observation (``entry_obs`` / ``build_obs``), the event digest, the state's
encoding (``_dumps``, ``state_encode``) and SQLite write (on the store's thread), the DT and HRM
forwards, and the garbage collector's pauses (``gc``, inside whichever part they land in).
``--cprofile`` also prints cProfile's top functions of the event-loop thread.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import gc
import json
import logging
import os
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from serve_load import FEATURES  # noqa: E402  (the day features serve_load.py sends)

END = {"page_durations_s": [50.0, 0.0, 0.0], "video_views": [1, 0, 0], "n_switches": 0,
       "usage_time": 60.0, "exit_page": "featured"}  # fmt: skip


class Parts:
    """CPU time of the calling thread inside named functions (wrapped in place), summed."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, attr: str, name: str | None = None) -> None:
        """Time ``owner.attr`` (``owner`` a module, a class, or a function's globals dict)."""
        get, put = (owner.get, owner.__setitem__) if isinstance(owner, dict) else (
            lambda a: getattr(owner, a), lambda a, v: setattr(owner, a, v))  # fmt: skip
        fn = get(attr)
        key = name or attr
        if asyncio.iscoroutinefunction(fn):
            raise TypeError(f"{key}: time the synchronous parts only")

        @functools.wraps(fn)
        def timed(*a: Any, **kw: Any) -> Any:
            t0 = time.thread_time()
            try:
                return fn(*a, **kw)
            finally:
                self.total[key] += time.thread_time() - t0
                self.calls[key] += 1

        put(attr, timed)
        self.undo.append(lambda: put(attr, fn))

    def reset(self) -> None:
        self.total.clear()
        self.calls.clear()

    def restore(self) -> None:
        for u in reversed(self.undo):
            u()


class _LRTG:
    """Stands in for the L-RTG handle (day starts are outside the timed figures)."""

    class _R1:
        @staticmethod
        def remote(features: dict[str, Any]) -> Any:
            async def r1() -> tuple[float, str]:
                return float(features["usage_7d"]), "usage_7d"

            return r1()

    class _Version:
        @staticmethod
        def remote() -> Any:
            async def version() -> str:
                return ""  # no checkpoint: left out of the day's model versions

            return version()

    r1 = _R1()
    version = _Version()


def make_ingress(models: str, state: str) -> Any:
    from ray.serve import batching

    from glan_ray.serving.ingress import Ingress

    # outside a replica: @serve.batch's check of the replica's max_ongoing_requests cannot run
    batching._BatchQueue._warn_if_max_batch_size_exceeds_max_ongoing_requests = lambda self: None

    cls = Ingress.func_or_class.__mro__[1]  # the class under Serve's ASGI wrapper
    ing = object.__new__(cls)
    user_config = {"dt": os.path.join(models, "dt"), "hrm": os.path.join(models, "hrm")}
    cls.__init__(ing, _LRTG(), None, None, None, f"sqlite://{state}", user_config)
    return ing


async def level(ing: Any, conc: int, n: int, users: range, spd: int, parts: Parts) -> dict:
    from glan_ray.serving import bodies as schemas

    cls = type(ing)
    todo = iter(range(n))
    day = {u: 0 for u in users}
    done = {u: 0 for u in users}

    async def call(method: Callable, model: Any, response: Any, body: dict, uid: int) -> Any:
        raw = json.dumps(body).encode()
        t0 = time.thread_time()
        parsed = model.model_validate(json.loads(raw))
        parts.total["http_parse"] += time.thread_time() - t0
        resp = await method(ing, body=parsed, user_id=uid)
        t0 = time.thread_time()
        json.dumps(response.model_validate(resp).model_dump(mode="json")).encode()
        parts.total["http_encode"] += time.thread_time() - t0
        return resp

    async def worker(wid: int) -> None:
        mine = [u for u in users if u % conc == wid]
        for i, k in enumerate(todo):
            u = mine[i % len(mine)]
            if done[u] == spd:
                day[u], done[u] = day[u] + 1, 0
                body = {"event_id": f"d{day[u]}", "day": day[u], "features": FEATURES}
                await call(cls.start_day, schemas.StartDay, schemas.StartDayResponse, body, u)
            body = {"event_id": f"e{k}", "day": day[u], "hour": 12.0, "live_count": 1}
            await call(cls.entry, schemas.Entry, schemas.EntryResponse, body, u)
            body = {"event_id": f"s{k}", "day": day[u], **END}
            await call(cls.session_end, schemas.SessionEnd, schemas.SessionEndResponse, body, u)
            done[u] += 1

    for u in users:  # every user's day 0, outside the figures
        body = {"event_id": "d0", "day": 0, "features": FEATURES}
        await call(cls.start_day, schemas.StartDay, schemas.StartDayResponse, body, u)
    parts.reset()
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(conc)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "concurrency": conc,
        "pairs": n,
        "pairs_per_s": n / wall,
        "cpu_ms_per_pair": 1e3 * cpu / n,
        "parts_cpu_ms_per_pair": {k: round(1e3 * v / n, 4) for k, v in sorted(parts.total.items())},
        "calls_per_pair": {k: round(v / n, 3) for k, v in sorted(parts.calls.items())},
    }


def instrument(parts: Parts) -> None:
    started = [0.0]

    def collecting(phase: str, info: dict[str, Any]) -> None:  # GC pauses, wherever they land
        if phase == "start":
            started[0] = time.thread_time()
        else:
            parts.total["gc"] += time.thread_time() - started[0]

    gc.callbacks.append(collecting)
    from glan_ray.serving import deployments, features, ingress, state

    parts.wrap(features, "entry_obs")
    parts.wrap(features, "after_session")
    if hasattr(features, "entry_obs_many"):
        parts.wrap(features, "entry_obs_many")
    parts.wrap(features, "build_obs")
    # the endpoints run in a copy of the ingress module's globals (Serve pickles the class)
    endpoint_globals = ingress.Ingress.func_or_class.__mro__[1].entry.__globals__
    parts.wrap(endpoint_globals, "_digest")
    parts.wrap(state, "_dumps")
    if hasattr(state, "DocEncoder"):
        parts.wrap(state.DocEncoder, "__call__", "state_encode")
    parts.wrap(state.SQLiteStore, "_write", "sqlite_write (store thread)")
    parts.wrap(deployments.DTModel.func_or_class, "probs", "dt_probs")
    parts.wrap(deployments.HRMModel.func_or_class, "rewards", "hrm_rewards")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="runs/demo/models")
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--requests", type=int, default=2000, help="entries per level")
    ap.add_argument("--users", type=int, default=256, help="users per level")
    ap.add_argument("--sessions-per-day", type=int, default=8)
    ap.add_argument("--cprofile", action="store_true", help="print cProfile's top functions")
    ap.add_argument("--results", help="write the levels as JSON here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import uvloop

    parts = Parts()
    instrument(parts)
    out = []
    with tempfile.TemporaryDirectory(prefix="serve_profile_") as tmp:
        ing = make_ingress(args.models, os.path.join(tmp, "state.sqlite3"))
        prof = cProfile.Profile() if args.cprofile else None

        async def run() -> None:
            offset = 0
            await level(ing, 8, 200, range(10**6, 10**6 + 64), args.sessions_per_day, parts)
            for conc in (int(c) for c in args.levels.split(",")):
                users = range(offset, offset + args.users)
                offset += args.users
                if prof:
                    prof.enable()
                res = await level(ing, conc, args.requests, users, args.sessions_per_day, parts)
                if prof:
                    prof.disable()
                logger.info("%s", json.dumps(res))
                out.append(res)

        uvloop.run(run())
        ing.store.pool.shutdown()
    parts.restore()
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    if args.results:
        with open(args.results, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
