"""Config fields are range-checked where they are declared (``glan_ray.checks``): every ranged
field of every config rejects a value outside its range with a message naming the class, the
field and the range, and NaN never passes."""

from __future__ import annotations

import dataclasses

import pytest

from glan_ray.checks import RANGE, Range, check_fields, ranged
from glan_ray.models.cql import QNetConfig
from glan_ray.models.dt import DTConfig
from glan_ray.sim.config import SimConfig
from glan_ray.train.config import CONFIGS

CLASSES = [SimConfig, DTConfig, QNetConfig, *CONFIGS.values()]


def _outside(r: Range) -> float:
    """A value just outside ``r`` (below its lower bound, else above its upper one)."""
    if r.gt is not None:
        return r.gt
    if r.ge is not None:
        return r.ge - 1
    return (r.lt if r.lt is not None else r.le) + 1


@pytest.mark.parametrize(
    ("cls", "name"),
    [(c, f.name) for c in CLASSES for f in dataclasses.fields(c) if RANGE in f.metadata],
)
def test_every_ranged_field_rejects_values_outside_its_range(cls, name):
    r = next(f.metadata[RANGE] for f in dataclasses.fields(cls) if f.name == name)
    with pytest.raises(ValueError, match=rf"^{cls.__name__}\.{name} must be .*; got "):
        cls(**{name: _outside(r)})
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.{name} must be"):
        cls(**{name: float("nan")})


def test_ranges_describe_themselves_and_none_means_unset():
    @dataclasses.dataclass(frozen=True)
    class C:
        p: float = ranged(0.5, gt=0, le=1)
        cap: int | None = ranged(None, ge=1)

        def __post_init__(self) -> None:
            check_fields(self)

    assert C().p == 0.5 and C(cap=None).cap is None and C(p=1.0).p == 1.0
    with pytest.raises(ValueError, match=r"^C\.p must be > 0 and <= 1; got 0$"):
        C(p=0)
    with pytest.raises(ValueError, match=r"^C\.cap must be >= 1; got 0$"):
        C(cap=0)
    with pytest.raises(ValueError, match=r"C\.p must be .*; got True"):
        C(p=True)  # a bool is not a number here
    assert len(CLASSES) >= 7 and sum(RANGE in f.metadata for c in CLASSES
                                     for f in dataclasses.fields(c)) > 40  # fmt: skip


def test_a_bad_training_field_from_the_cli_exits_2_naming_it(tmp_path, capsys):
    from glan_ray.cli import main

    code = main(["train", "lrtg", "--data", str(tmp_path), "--out", str(tmp_path),
                 "--set", "eps_se=-3"])  # fmt: skip
    assert code == 2
    assert "LRTGTrainConfig.eps_se must be > 0; got -3" in capsys.readouterr().err
