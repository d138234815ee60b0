"""FieldMMoEConfig: the architecture fields the field-embedding + MMoE models share."""

from __future__ import annotations

import dataclasses
import json

import pytest

from glan_ray.models.hrm import HRMConfig
from glan_ray.models.klan_am import AMConfig
from glan_ray.models.klan_isp import ISPConfig
from glan_ray.nn.config import FieldMMoEConfig


def test_n_fields_counts_categorical_and_numeric_fields():
    assert FieldMMoEConfig((4, 6, 8), 5).n_fields == 8
    assert FieldMMoEConfig((), 3).n_fields == 3
    assert FieldMMoEConfig((2,), 0).n_fields == 1


def test_cardinalities_from_json_lists_become_a_tuple_and_round_trip():
    cfg = FieldMMoEConfig([4, 6], 5, d=8, n_experts=2)
    assert cfg.cat_cardinalities == (4, 6)
    # checkpoints store the config as JSON: lists come back and still compare equal
    back = FieldMMoEConfig(**json.loads(json.dumps(dataclasses.asdict(cfg))))
    assert back == cfg and hash(back) == hash(cfg)


def test_defaults_and_frozen():
    cfg = FieldMMoEConfig((4,), 2)
    assert (cfg.d, cfg.n_experts, cfg.expert_hidden, cfg.tower_hidden) == (16, 4, 64, 32)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.d = 32  # type: ignore[misc]


@pytest.mark.parametrize("cls", [HRMConfig, ISPConfig, AMConfig])
def test_every_model_config_shares_the_fields(cls):
    cfg = cls([4, 6], 5, d=8)
    assert isinstance(cfg, FieldMMoEConfig)
    assert cfg.cat_cardinalities == (4, 6) and cfg.n_fields == 7 and cfg.d == 8


def test_sizes_are_checked_naming_the_field():
    for field, bad in (("d", 0), ("n_experts", 0), ("expert_hidden", 0), ("tower_hidden", -1)):
        with pytest.raises(ValueError, match=rf"FieldMMoEConfig\.{field} must be >= 1"):
            FieldMMoEConfig(cat_cardinalities=(3,), n_num=2, **{field: bad})
    with pytest.raises(ValueError, match=r"n_num must be an integer >= 0; got -1"):
        FieldMMoEConfig(cat_cardinalities=(3,), n_num=-1)
    with pytest.raises(ValueError, match=r"cat_cardinalities must be integers >= 1; got \[0\]"):
        FieldMMoEConfig(cat_cardinalities=(3, 0), n_num=2)
