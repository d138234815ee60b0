"""ρ_h and ρ_n of the dynamic α(s), measured in one pass over the transitions. Ray Data's reader
is replaced by a stand-in streaming the Parquet file in small numpy batches (no Ray started)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from glan_ray.rllib.cql.activity import measure_activity


class StreamedParquet:
    """What measure_activity uses of a Ray Dataset, over a local Parquet file."""

    def __init__(self, table: pa.Table, log: list) -> None:
        self.table, self.log = table, log

    def select_columns(self, cols: list[str]) -> StreamedParquet:
        self.log.append(("select", list(cols)))
        return StreamedParquet(self.table.select(cols), self.log)

    def iter_batches(self, batch_size: int, batch_format: str):
        assert batch_format == "numpy"
        for b in self.table.to_batches(max_chunksize=4):  # several batches, summed
            self.log.append(("batch", b.num_rows))
            yield {name: b.column(name).to_numpy() for name in b.schema.names}


@pytest.fixture
def reader(monkeypatch):
    log: list = []

    def read_parquet(path: str) -> StreamedParquet:
        log.append(("read", path))
        return StreamedParquet(pq.read_table(path), log)

    monkeypatch.setattr("ray.data.read_parquet", read_parquet)
    return log


def _write(tmp_path, hours: list[float], entries: list[int]) -> str:
    path = str(tmp_path / "transitions.parquet")
    table = pa.table({"hour": pa.array(hours, pa.float32()),
                      "entries_today": pa.array(entries, pa.int16()),
                      "reward": pa.array([1.0] * len(hours), pa.float32())})  # fmt: skip
    pq.write_table(table, path)
    return path


def test_ratios_by_hand(tmp_path, reader):
    hours = [0.5, 0.9, 1.2, 23.99, 0.0, 12.5, 23.5, 23.0, 12.0, 0.1]
    entries = [0, 0, 1, 2, 7, 20, 0, 1, 3, 2]
    path = _write(tmp_path, hours, entries)
    rho_h, rho_n = measure_activity(path, n_freq=4)
    # entries per hour: 0h 4, 1h 1, 12h 2, 23h 3; mean 10 / 24
    want_h = np.full(24, 1e-3)  # empty hours are floored, so α stays finite
    want_h[[0, 1, 12, 23]] = np.array([4, 1, 2, 3]) / (10 / 24)
    np.testing.assert_allclose(rho_h, want_h)
    # entry counts 0, 1, 2 and 3+ (7, 20 and 3 share the last bucket): 3, 2, 2, 3; mean 2.5
    np.testing.assert_allclose(rho_n, [1.2, 0.8, 0.8, 1.2])
    assert isinstance(rho_h, list) and len(rho_h) == 24 and len(rho_n) == 4
    # one pass over two columns, in several batches
    assert reader[:2] == [("read", path), ("select", ["hour", "entries_today"])]
    assert [n for kind, n in reader if kind == "batch"] == [4, 4, 2]


def test_ratios_of_logged_transitions_average_to_one(tmp_path, reader, transitions):
    path = str(tmp_path / "t.parquet")
    pq.write_table(transitions, path)
    rho_h, rho_n = measure_activity(path, n_freq=16)
    hours = transitions.column("hour").to_numpy().astype(int)
    counts = np.bincount(hours, minlength=24)
    assert (counts > 0).all()  # every hour is logged: no floor, so the mean is exactly 1
    np.testing.assert_allclose(rho_h, counts / counts.mean())
    assert np.mean(rho_h) == pytest.approx(1.0)
    assert 2 <= np.argmin(rho_h) <= 6 and rho_h[20] > 1  # the tidal valley and evening peak
    assert rho_n[0] > rho_n[-1]  # every user-day has a first entry, few have sixteen


def test_no_logged_entry_is_an_error(tmp_path, reader):
    with pytest.raises(ValueError, match="at least one logged entry"):
        measure_activity(_write(tmp_path, [], []), n_freq=4)
