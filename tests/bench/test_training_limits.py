"""bench/training_limits.py's overhead figure and bench/profile_buckets.py's bucketing, by hand."""

from __future__ import annotations

import importlib.util
import math
import pathlib
import sys

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


limits = _load("training_limits")
buckets = _load("profile_buckets")

SITE = "/venv/lib/python3.11/site-packages"
STDLIB = "/usr/lib/python3.11"


def test_overhead_is_the_extra_time_per_update_in_percent_of_the_plain_loop():
    assert limits.overhead_pct(100.0, 50.0) == 100.0  # twice the time per update
    assert math.isclose(limits.overhead_pct(120.0, 100.0), 20.0)
    assert math.isclose(limits.overhead_pct(80.0, 100.0), -20.0)  # the platform faster
    assert math.isnan(limits.overhead_pct(0.0, 10.0))


def test_files_fall_in_their_buckets_and_rllib_s_torch_folder_is_not_the_model():
    def of(path: str, func: str = "f") -> str | None:
        return buckets.bucket_of((path, 1, func), STDLIB)

    assert of(f"{SITE}/torch/nn/modules/linear.py") == buckets.MODEL
    assert of("/repo/glan_ray/rllib/dt/torch/dt_torch_learner.py") == buckets.MODEL
    assert of(f"{SITE}/ray/rllib/core/learner/torch/torch_learner.py").startswith("RLlib learner")
    assert of(f"{SITE}/ray/rllib/utils/metrics/stats.py") == "RLlib metrics"
    assert of(f"{SITE}/ray/train/torch/train_loop_utils.py").startswith("Ray Train")
    assert of(f"{SITE}/ray/data/iterator.py") == "Ray Data"
    assert of("/repo/glan_ray/train/loop.py", "__call__") == "features & pre-learner"
    assert of("/repo/glan_ray/train/loop.py", "train_loop_per_worker") == "train loop bookkeeping"
    for neutral in ("~", f"{STDLIB}/queue.py", f"{SITE}/numpy/core/x.py", f"{SITE}/ray/actor.py"):
        assert of(neutral) is None


def test_neutral_time_goes_to_its_callers_in_proportion_roots_to_the_loop_cycles_to_other():
    torch_fn = (f"{SITE}/torch/nn/modules/linear.py", 1, "forward")
    data_next = (f"{SITE}/ray/data/iterator.py", 5, "__next__")
    report = (f"{SITE}/ray/train/v2/api/train_fn_utils.py", 9, "report")
    queue_get = (f"{STDLIB}/queue.py", 1, "get")
    lock = ("~", 0, "<method 'acquire' of '_thread.lock' objects>")
    length = ("~", 0, "<built-in method len>")
    a, b = (f"{STDLIB}/a.py", 1, "a"), (f"{STDLIB}/b.py", 1, "b")
    stats = {  # key: (cc, nc, own s, cum s, {caller: (cc, nc, own s from it, cum s)})
        torch_fn: (1, 1, 2.0, 2.0, {}),
        data_next: (1, 1, 0.5, 3.5, {}),
        report: (1, 1, 0.1, 1.1, {}),
        queue_get: (1, 1, 1.0, 2.0, {data_next: (1, 1, 1.0, 2.0)}),
        # 3 s waiting on a lock: 2 s under queue.get (so Ray Data), 1 s under Ray Train's report
        lock: (2, 2, 3.0, 3.0, {queue_get: (1, 1, 2.0, 2.0), report: (1, 1, 1.0, 1.0)}),
        length: (1, 1, 0.4, 0.4, {}),  # called by the loop, entered before profiling began
        a: (1, 1, 0.3, 0.3, {b: (1, 1, 0.3, 0.3)}),
        b: (1, 1, 0.2, 0.5, {a: (1, 1, 0.2, 0.5)}),
    }
    got = buckets.bucket_profile(stats, root="train loop bookkeeping", stdlib=STDLIB)
    want = {
        "Ray Data": 0.5 + 1.0 + 2.0,
        "model, loss & optimizer (torch)": 2.0,
        "Ray Train: checkpoint & report": 0.1 + 1.0,
        "train loop bookkeeping": 0.4,
        "other": 0.5,
    }
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert math.isclose(got[k], v), (k, got[k], v)
    assert list(got) == sorted(got, key=lambda k: -got[k])  # largest first
