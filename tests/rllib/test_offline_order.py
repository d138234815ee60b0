"""RLlib's offline read keeps the files' row order (``data.read.in_order``), however the load
orders its tasks and its learners' collation threads: the pre-learner's batches and the
learners' minibatches are the same from run to run (tests/data/test_read_order.py's checks)."""

from __future__ import annotations

import numpy as np

from glan_ray.rllib.cql.cql import DiscreteCQLConfig
from glan_ray.rllib.offline import ArrowOfflineData
from tests.data.test_read_order import _user_ids, batch_user_ids, parts  # noqa: F401  (fixture)


def test_rllib_offline_data_keeps_the_files_order(ray_session, parts):  # noqa: F811
    root, expected = parts
    config = DiscreteCQLConfig().offline_data(input_=f"{root}/transitions")
    data = ArrowOfflineData(config).data
    np.testing.assert_array_equal(_user_ids(data), expected)
    np.testing.assert_array_equal(batch_user_ids(data.materialize()), expected)
    assert data.context.execution_options.preserve_order
