"""What the offline algorithms share, without starting Ray: spaces, the categorical action
distribution, the config defaults, own training() keys and validation, and the Arrow
pre-learner's validation of every batch. (Training steps, get_module and checkpoint restore need
a learner group: tests/rllib/test_algorithms.py runs them inside the shared Ray fixture.)"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pyarrow as pa
import pytest
from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical

from glan_ray.data.features import as_columns
from glan_ray.rllib.cql.cql import DiscreteCQLConfig
from glan_ray.rllib.dt.dt import DTConfig
from glan_ray.rllib.offline import (
    ArrowOfflineData,
    ArrowPreLearner,
    CategoricalPages,
    OfflineAlgorithmConfig,
    obs_space,
)
from glan_ray.schema import N_PAGES, OBS_DIM, DatasetValidationError


class Identity(ArrowPreLearner):
    """Returns the validated table's action and reward columns."""

    dataset = "transitions"

    def transform(self, table: pa.Table) -> dict[str, np.ndarray]:
        return {"a": table.column("action").to_numpy(), "r": table.column("reward").to_numpy()}


def _pre(cls: type[ArrowPreLearner] = Identity) -> ArrowPreLearner:
    config = DiscreteCQLConfig().offline_data(input_="/runs/x/data/transitions")
    return cls(config=config, spaces=(obs_space(), gym.spaces.Discrete(N_PAGES)))


def test_the_observation_space_is_the_schemas_obs_vector():
    space = obs_space()
    assert space.shape == (OBS_DIM,) and space.dtype == np.float32
    assert np.isinf(space.low).all() and np.isinf(space.high).all()
    assert space.contains(np.zeros(OBS_DIM, np.float32))


def test_both_policies_act_with_a_categorical_over_the_pages():
    mixin = CategoricalPages()
    assert mixin.get_inference_action_dist_cls() is TorchCategorical
    assert mixin.get_exploration_action_dist_cls() is TorchCategorical
    assert mixin.get_train_action_dist_cls() is TorchCategorical


def test_config_defaults_build_no_environment():
    cfg = OfflineAlgorithmConfig()
    assert cfg._is_online is False
    assert cfg.observation_space == obs_space()
    assert cfg.action_space == gym.spaces.Discrete(N_PAGES)
    assert cfg.offline_data_class is ArrowOfflineData
    assert cfg.input_read_method == "read_parquet"
    assert (cfg.min_sample_timesteps_per_iteration, cfg.min_time_s_per_iteration) == (0, 0)
    # the pre-learner is handed Arrow tables, on no reserved CPU
    kwargs = ArrowOfflineData.default_map_batches_kwargs.fget(None)
    assert kwargs["batch_format"] == "pyarrow" and kwargs["num_cpus"] == 0


def test_own_training_keys_are_the_subclass_fields_in_declaration_order():
    assert OfflineAlgorithmConfig.own_training_keys() == ()
    cql = DiscreteCQLConfig.own_training_keys()
    assert cql[:3] == ("reward_scale", "tau", "target_network_update_freq")
    assert {"alpha0", "static_alpha", "hour_ratio", "n_freq_buckets"} <= set(cql)
    assert DTConfig.own_training_keys() == (
        "reward_column", "rtg_scale", "skip_deterministic_days", "propensity_weighting",
        "max_weight", "target_gain", "advantage_tokens", "rtg_baseline", "q_labels",
        "act_critic", "state_target", "command_expectile", "command_head", "bucket_by_length",
    )  # fmt: skip
    # AlgorithmConfig's own fields (set again in the subclasses' __init__) are not ours
    assert not {"lr", "gamma", "grad_clip", "prelearner_class"} & set(
        cql + DTConfig.own_training_keys()
    )


def test_training_sets_our_keys_and_passes_the_rest_to_rllib():
    cfg = DTConfig().training(rtg_scale=60.0, bucket_by_length=False, lr=1e-2)
    assert (cfg.rtg_scale, cfg.bucket_by_length, cfg.lr) == (60.0, False, 1e-2)
    with pytest.raises(TypeError, match="rtg_scal"):
        DTConfig().training(rtg_scal=60.0)


def test_validation_names_the_offline_data_fix():
    ok = DiscreteCQLConfig().offline_data(input_="/runs/x/data/transitions")
    ok.validate()
    with pytest.raises(ValueError, match=r"offline_data\(input_=\.\.\.\) must name the dataset"):
        DiscreteCQLConfig().validate()  # RLlib's default input is its online "sampler"
    with pytest.raises(ValueError, match=r"offline_data\(input_=\.\.\.\) must name the dataset"):
        DiscreteCQLConfig().offline_data(input_="").validate()
    with pytest.raises(ValueError, match="dataset_num_iters_per_learner=N"):
        DiscreteCQLConfig().offline_data(input_="/d", dataset_num_iters_per_learner=0).validate()
    bad = DiscreteCQLConfig().offline_data(input_="/d", input_read_method="read_json")
    with pytest.raises(ValueError, match="input_read_method must be 'read_parquet'"):
        bad.validate()


def test_pre_learner_validates_then_prefixes_the_module_id(transitions):
    out = _pre()(transitions)
    assert set(out) == {"default_policy/a", "default_policy/r"}
    np.testing.assert_array_equal(out["default_policy/a"], transitions.column("action").to_numpy())
    # compatible types are cast to the schema's before transform sees them
    wide = transitions.set_column(
        transitions.schema.get_field_index("action"), "action",
        transitions.column("action").cast(pa.int64()),
    )  # fmt: skip
    assert _pre()(wide)["default_policy/a"].dtype == np.int8


def test_pre_learner_takes_numpy_column_batches(transitions):
    """Ray Data's numpy batches: fixed-size list columns come as 2-D arrays."""
    cols = as_columns(transitions)
    assert cols["obs"].shape == (transitions.num_rows, OBS_DIM)
    out, want = _pre()(cols), _pre()(transitions)
    for k in want:
        np.testing.assert_array_equal(out[k], want[k], err_msg=k)


def test_pre_learner_names_the_bad_column_and_the_input(transitions):
    r = transitions.column("reward").to_numpy().copy()
    r[[2, 5]] = np.nan
    bad = transitions.set_column(
        transitions.schema.get_field_index("reward"), "reward", pa.array(r, pa.float32())
    )
    where = r"dataset 'transitions' in /runs/x/data/transitions is invalid"
    with pytest.raises(DatasetValidationError, match=rf"(?s){where}.*column 'reward': has NaN"):
        _pre()(bad)
    with pytest.raises(DatasetValidationError, match=r"NaN or infinite values \(2 rows\)"):
        _pre()(bad)
    with pytest.raises(DatasetValidationError, match="column 'next_obs': missing"):
        _pre()(transitions.drop_columns(["next_obs"]))
    cols = as_columns(transitions)
    cols["obs"] = cols["obs"][:, :5]
    with pytest.raises(DatasetValidationError, match="column 'obs'"):
        _pre()(cols)


def test_the_base_pre_learner_has_no_transform(transitions):
    class Bare(ArrowPreLearner):
        dataset = "transitions"

    with pytest.raises(NotImplementedError):
        _pre(Bare)(transitions)
