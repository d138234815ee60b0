"""Each bad-event class: the column, the issue and the rows it finds (no Ray)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from glan_ray.apps import plpm_spec
from glan_ray.ingest.events import (
    BadEventsError,
    EventChecks,
    check_rows,
    counts,
    reasons,
    seconds,
    type_problems,
)
from glan_ray.ingest.profiles import user_table

T0 = 1_700_000_000.0


def _events(n: int = 6) -> dict[str, list]:
    return {
        "user_id": list(range(n)),
        "ts": [T0 + 60.0 * i for i in range(n)],
        "page": ["featured", "explore", "following"] * (n // 3),
        "dwell_s": [30.0] * n,
        "views": [1] * n,
        "propensity": [0.5] * n,
        "treatment": [None] * n,
        "age": [1] * n,
        "live_count": [0] * n,
    }


def _found(cols: dict[str, list], known: np.ndarray | None = None) -> dict[tuple[str, str], int]:
    table = pa.table(cols)
    on_events = tuple(c for c in ("activity", "age", "region", "social_degree") if c in cols)
    ec = EventChecks(plpm_spec(), tuple(cols), on_events, known)
    mask = check_rows(table, ec)
    return {(c.column, c.issue): k for c, k in zip(ec.checks, counts(mask, len(ec.checks)),
                                                     strict=True) if k}  # fmt: skip


def test_good_events_have_no_finding():
    assert _found(_events()) == {}


@pytest.mark.parametrize(
    ("column", "values", "issue", "rows"),
    [
        ("page", ["featured", "mall", None, "Explore", "explore", "following"],
         "unknown page (the spec's pages are ['featured', 'explore', 'following'])", 3),
        ("dwell_s", [30.0, -1.0, float("nan"), None, 0.0, 5.0], "is negative, NaN or null", 3),
        ("ts", [T0, float("inf"), float("nan"), None, T0, T0], "is null, NaN or infinite", 3),
        ("user_id", [1, None, 2, 3, 4, 5], "is null", 1),
        ("views", [0, -2, None, 1, 1, 1], "is negative or null", 2),
        ("propensity", [1.0, 0.0, 1.5, -0.1, float("nan"), 0.25], "is outside (0, 1] or NaN", 4),
        ("treatment", [None, 0, 3, 4, -1, 2],
         "unknown treatment (expected 0..3: 0 = control, k = page k-1)", 2),
        ("age", [0, 5, 6, -1, None, 2], "profile value outside its cardinality [0, 6)", 3),
        ("live_count", [0, 1, None, float("nan"), 2, 3],
         "context input is null, NaN or infinite", 2),
    ],
)  # fmt: skip
def test_each_bad_event_class_names_its_column_issue_and_rows(column, values, issue, rows):
    cols = _events()
    cols[column] = values
    assert _found(cols) == {(column, issue): rows}


def test_a_user_missing_from_the_users_table():
    assert _found(_events(), known=np.array([0, 1, 2, 5])) == {
        ("user_id", "user not in the --users table"): 2
    }


def test_a_row_with_two_problems_counts_in_both_and_its_reason_says_both():
    cols = _events()
    cols["page"][0], cols["dwell_s"][0] = "mall", -3.0
    ec = EventChecks(plpm_spec(), tuple(cols), ("age",))
    mask = check_rows(pa.table(cols), ec)
    assert (mask != 0).sum() == 1
    assert reasons(mask[:1], ec.checks).to_pylist() == [
        "page: unknown page (the spec's pages are ['featured', 'explore', 'following']); "
        "dwell_s: is negative, NaN or null"
    ]


def test_columns_of_the_wrong_type():
    sch = pa.schema([("user_id", pa.string()), ("ts", pa.string()), ("page", pa.int64()),
                     ("dwell_s", pa.float64())])  # fmt: skip
    found = {(c.column, c.issue) for c in type_problems(sch)}
    assert found == {
        ("user_id", "user id of the wrong type: has type string, expected an integer (int64)"),
        ("ts", "has type string, expected seconds since the epoch or a timestamp"),
        ("page", "has type int64, expected a string"),
    }
    float_ids = pa.schema([("user_id", pa.float64()), ("propensity", pa.string())])
    assert [(c.column, c.issue) for c in type_problems(float_ids, ("propensity",))] == [
        ("user_id", "user id of the wrong type: has type double, expected an integer (int64)"),
        ("propensity", "has type string, expected a number"),
    ]


def test_timestamps_in_any_unit_are_seconds():
    ts = pa.array([1_700_000_000_500], pa.timestamp("ms"))
    assert seconds(ts).tolist() == [1_700_000_000.5]
    assert seconds(pa.array([5, None])).tolist()[0] == 5.0


def test_a_users_table_with_bad_rows_is_refused_naming_them():
    table = pa.table({"user_id": [1, 2, 2, 4], "activity": [0, 4, 1, 1], "age": [0, 0, 0, 0],
                      "region": [0, 0, 0, 0], "social_degree": [1.0, None, 2.0, 3.0]})  # fmt: skip
    fields = ("activity", "age", "region", "social_degree")
    with pytest.raises(BadEventsError) as e:
        user_table(table, plpm_spec(), fields, "users.parquet")
    msg = str(e.value)
    assert "column '--users user_id': repeats a user id (1 rows)" in msg
    assert "column '--users activity': profile value outside its cardinality [0, 4) (1 rows)" in msg
    assert "column '--users social_degree': profile value is null, NaN or infinite (1 rows)" in msg
    good = table.slice(0, 2).set_column(1, "activity", pa.array([3, 1]))
    good = good.set_column(4, "social_degree", pa.array([1.0, 2.0]))
    ut = user_table(good, plpm_spec(), fields, "users.parquet")
    assert ut.lookup(np.array([2, 1]))["activity"].tolist() == [1.0, 3.0]
