"""Connecting to Ray: an embedded local instance by default, a cluster when an address is given."""

from __future__ import annotations

import logging
import os

import ray

logger = logging.getLogger(__name__)


def init_ray(address: str | None = None, num_cpus: int | None = None, quiet: bool = True) -> None:
    """Start or join Ray once per process.

    With no ``address`` (and no ``RAY_ADDRESS`` in the environment, as under ``ray job submit``)
    an embedded local Ray starts without the dashboard. ``quiet`` lowers Ray Data's per-dataset
    INFO logs and progress bars, which would drown the CLI's own progress.
    """
    if quiet:
        for name in ("ray.data", "ray._private.worker", "ray.train", "ray.tune"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # Warnings about what quiet does on purpose (no progress bars) or about an optional
        # package we never use (GPU monitoring of RLlib's Trainable): not the user's problem.
        for name in ("ray.data._internal.progress", "ray.tune.utils.util"):
            logging.getLogger(name).setLevel(logging.ERROR)
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        if address:
            logger.info("connecting to Ray at %s", address)
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    if quiet:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
