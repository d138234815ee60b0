"""Every training read keeps the files' row order, however the load orders Ray Data's tasks
(``data.read.in_order``): the same seed trains the same weights from run to run.

Each check makes the first file's task, or the first batch's collation, finish last (it
sleeps): a read that hands blocks or batches on in completion order would then give them last."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from glan_ray.data.read import in_order, ordered_ingest_options, read_dataset
from glan_ray.sim.config import SimConfig

SLEEP_S = 1.0
"""How long the first file's task waits: far longer than the other files' tasks take."""


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> tuple[str, np.ndarray]:
    """A run directory whose ``transitions`` are 4 files of 25 users each; the user ids in the
    files' order."""
    from glan_ray.data.tables import day_tables
    from glan_ray.sim.baselines import LoggingPolicy
    from glan_ray.sim.engine import simulate

    cfg = SimConfig(block_size=100)
    t = day_tables(next(simulate(cfg, 0, 100, 1, LoggingPolicy(cfg))), False)["transitions"]
    root = tmp_path_factory.mktemp("run")
    (root / "transitions").mkdir()
    users = t.column("user_id").to_numpy()
    order = []
    for i, first in enumerate(range(0, 100, 25)):
        part = t.filter(pa.array((users >= first) & (users < first + 25)))
        pq.write_table(part, root / "transitions" / f"part-{i}.parquet")
        order.append(part.column("user_id").to_numpy())
    return str(root), np.concatenate(order)


def _first_file_last(batch: pa.Table) -> pa.Table:
    if batch.num_rows and batch.column("user_id")[0].as_py() == 0:  # the first file's block
        time.sleep(SLEEP_S)
    return batch


def _user_ids(ds) -> np.ndarray:
    slow = ds.map_batches(_first_file_last, batch_format="pyarrow", batch_size=None)
    return np.concatenate([b["user_id"] for b in slow.iter_batches(batch_format="numpy")])


def test_read_dataset_and_its_derived_datasets_keep_the_files_order(ray_session, parts):
    root, expected = parts
    ds = read_dataset(root, "transitions", validate=False)
    np.testing.assert_array_equal(_user_ids(ds), expected)
    assert ds.context.execution_options.preserve_order  # how: data.read.in_order


def _slow_first_batch(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    if batch["user_id"][0] == 0:  # the first batch is collated last
        time.sleep(SLEEP_S)
    return {"user_id": torch.as_tensor(batch["user_id"])}


def batch_user_ids(ds) -> np.ndarray:
    """The user ids of ``ds``'s torch batches as a learner gets them: collated in a pool of
    ``prefetch_batches`` threads (RLlib's learners use 2), the first batch slowest."""
    batches = ds.iter_torch_batches(batch_size=64, prefetch_batches=2, collate_fn=_slow_first_batch)
    return np.concatenate([b["user_id"].numpy() for b in batches])


def test_a_materialised_read_and_its_batches_keep_the_files_order(ray_session, parts):
    """The blocks as their tasks finish, and the batches as their collation threads finish
    (even one block's batches: Ray Data collates them in a thread pool)."""
    root, expected = parts
    ds = read_dataset(root, "transitions", validate=False, materialize=True)
    np.testing.assert_array_equal(_user_ids(ds), expected)
    np.testing.assert_array_equal(batch_user_ids(ds), expected)


def test_in_order_keeps_the_order_of_any_dataset(ray_session):
    import ray

    ds = in_order(ray.data.range(4, override_num_blocks=4))

    def slow_first(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if batch["id"][0] == 0:
            time.sleep(SLEEP_S)
        return batch

    out = ds.map_batches(slow_first, batch_size=None).take_all()
    assert [r["id"] for r in out] == [0, 1, 2, 3]


def test_ray_train_ingest_keeps_the_order(monkeypatch):
    """``trainer.fit`` hands Ray Train ingest options that keep the order (Train replaces each
    dataset's own options with them)."""
    from glan_ray.data.features import Normalizer
    from glan_ray.train import trainer
    from glan_ray.train.config import train_config

    assert ordered_ingest_options().preserve_order
    seen: dict[str, object] = {}

    class Stop(Exception):
        pass

    def fake_trainer(*args: object, **kwargs: object) -> None:
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(trainer, "TorchTrainer", fake_trainer)
    monkeypatch.setattr(trainer, "model_config", lambda *a, **k: {})
    data = trainer.Prepared(None, None, Normalizer({}, {}), {}, {}, None)
    with pytest.raises(Stop):
        trainer.fit("isp", train_config("isp", {"data": "unused", "out": "unused"}), data=data)
    config = seen["dataset_config"]
    for name in ("train", "val"):
        assert config._resolve_execution_options(name).preserve_order
