"""early_stop.Plateau: when a run stops, which check is the best, and what the log says."""

from __future__ import annotations

import math

import pytest

from glan_ray.early_stop import Plateau


def test_min_mode_stops_after_patience_checks_without_a_relative_improvement():
    p = Plateau("val/loss", "min", patience=2, min_delta=0.1)
    assert p.update(1.0)  # the first finite value is the best
    assert not p.update(0.95)  # 5% lower: not the 10% asked for
    assert not p.stop
    assert p.update(0.85)  # 15% lower than 1.0: the new best, patience restarts
    assert not p.update(0.80) and not p.update(0.9)  # 0.80 is only 5.9% below 0.85
    assert p.stop and p.best == 0.85 and p.best_check == 3 and p.since_best == 2
    assert p.reason("epoch") == (
        "val/loss did not improve by 10% for 2 epoch(s) (patience 2); best 0.85 at epoch 3"
    )


def test_max_mode_and_non_finite_values_count_as_no_improvement():
    p = Plateau("val_snips", "max", patience=1)
    assert not p.update(float("nan"))  # counts towards patience, never the best
    assert p.stop and p.best is None
    p = Plateau("val_snips", "max", patience=2)
    assert p.update(5.0) and p.update(5.1)
    assert not p.update(None) and not p.update(math.inf)
    assert p.stop and p.best == 5.1 and p.best_check == 2


@pytest.mark.parametrize(
    "kw, match",
    [({"mode": "up"}, "mode must be"), ({"patience": 0}, "patience must be >= 1"),
     ({"min_delta": -0.1}, "min_delta must be >= 0"), ({"min_delta": math.nan}, "min_delta")],
)  # fmt: skip
def test_bad_settings_are_refused_by_name(kw, match):
    with pytest.raises(ValueError, match=match):
        Plateau("m", **kw)
