"""Flush the decision log from the state store to Parquet (``glan-ray logs-to-datasets --flush``).

At-least-once: a batch of the oldest rows is written as one Parquet file (``decision_log.
write_log_file``: written whole, fsynced, renamed into place), and only then are exactly those
rows (by their sequence numbers) deleted from the store. A crash between the two writes the
same rows again on the next flush, in another file; ``decision_log.read_log`` keeps the first
record of each event key, so the datasets count every event once. Two flushes at once may also
write a row twice, never lose one (each deletes only the rows it wrote). Serve keeps running
while a flush runs: new rows simply wait for the next one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pyarrow as pa

from glan_ray.data import decision_log as dlog
from glan_ray.serving.state import make_store

logger = logging.getLogger(__name__)


def _table(rows: list[tuple[int, str, int, int, str, str]]) -> pa.Table:
    cols = list(zip(*rows, strict=True))
    return pa.Table.from_arrays(
        [pa.array(c, type=f.type) for c, f in zip(cols, dlog.LOG_SCHEMA, strict=True)],
        schema=dlog.LOG_SCHEMA,
    )


async def flush_async(store_url: str | None, out_dir: str, batch: int = 50_000) -> dict[str, Any]:
    store = make_store(store_url)
    files, rows = [], 0
    while True:
        got = await store.log_read(batch)
        if not got:
            break
        path = dlog.write_log_file(out_dir, _table(got))  # durable before anything is deleted
        deleted = await store.log_delete([r[0] for r in got])
        files.append(path)
        rows += len(got)
        logger.info("decision log: %d rows -> %s (%d deleted from the store)", len(got), path,
                    deleted)  # fmt: skip
        if len(got) < batch:
            break
    return {"rows": rows, "files": files}


def flush(store_url: str | None, out_dir: str, batch: int = 50_000) -> dict[str, Any]:
    """Move every decision-log row of the store (``state.make_store`` URL: ``embedded``,
    ``sqlite:///path``, ``redis://...``) into Parquet files under ``out_dir``, ``batch`` rows a
    file. Returns ``{"rows": n, "files": [...]}``."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    return asyncio.run(flush_async(store_url, out_dir, batch))
