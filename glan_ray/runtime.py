"""Connecting to Ray: an embedded local instance by default, a cluster when an address is given;
checking that a GPU flag asks for GPUs the cluster can provide."""

from __future__ import annotations

import logging
import os

import ray

logger = logging.getLogger(__name__)

LOCAL_RAY_ENV = "GLAN_RAY_LOCAL_RAY"
"""Set to 1 by ``init_ray`` before it starts an embedded Ray, so that every process of that Ray
(its raylet's workers inherit the environment: Tune trials, pipeline stage tasks) knows no node
can ever join it."""


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
            os.environ.pop(LOCAL_RAY_ENV, None)
            ray.init(address=address, log_to_driver=False)
        else:
            os.environ[LOCAL_RAY_ENV] = "1"  # before the raylet starts: its workers inherit it
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    if quiet:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False


class GPUUnavailableError(ValueError):
    """A GPU flag asks for GPUs this Ray can never provide (a ValueError: the CLI prints it as a
    one-line error, exit code 2)."""


def cluster_gpus() -> float:
    """GPUs of the Ray cluster now (``ray.cluster_resources()``); before Ray is up, the CUDA devices
    this process sees (what an embedded Ray would register)."""
    if ray.is_initialized():
        return float(ray.cluster_resources().get("GPU", 0))
    import torch

    return float(torch.cuda.device_count())


def _local_ray() -> bool:
    """Whether the Ray this process uses is an embedded one that no node will ever join: started
    by this process (it is the head), or by ``init_ray`` (the marker its workers inherit)."""
    if not ray.is_initialized():
        return not os.environ.get("RAY_ADDRESS")  # Ray would start here, on this machine
    if os.environ.get(LOCAL_RAY_ENV) == "1":
        return True
    node = getattr(ray._private.worker, "_global_node", None)  # private: None -> not local
    return bool(node is not None and node.is_head())


def _autoscaler_max_gpus() -> float | None:
    """The most GPUs the cluster's autoscaler may ever provide (its published node types), or
    None when no autoscaler publishes them (an embedded Ray, a fixed cluster, autoscaler v1).
    Ray Train's own worker-group check reads the same figure."""
    if not ray.is_initialized():
        return None
    try:
        from ray._private.state import state

        most = state.get_max_resources_from_cluster_config()
    except Exception:  # a private API: without it, the conservative answer
        return None
    return None if not most else float(most.get("GPU", 0))


def _describe(resources: dict[str, float]) -> str:
    # node:<ip> and placement-group shares (CPU_group_<id>) say nothing about what can be asked
    keep = {k: v for k, v in sorted(resources.items()) if not k.startswith("node:")
            and "_group_" not in k}  # fmt: skip
    return ", ".join(
        f"{k} {v / 2**30:.1f} GiB" if "memory" in k else f"{k} {v:g}" for k, v in keep.items()
    )


def require_gpus(flag: str, needed: float, per: str = "") -> None:
    """Fail fast when ``flag`` asks for ``needed`` GPUs (``per``: what each one is for, as the
    message says it) that this Ray can never provide.

    Ray Train workers, RLlib remote learners, Tune trials and Serve replicas that ask for GPUs a
    cluster lacks pend forever, silently or behind periodic warnings, and RLlib's local learner
    dies on an assertion. So, when the cluster has fewer GPUs than ``needed``:

    - an embedded local Ray (nothing can join it), or an autoscaler whose node types hold fewer
      GPUs: raise ``GPUUnavailableError`` naming the flag and the cluster's resources;
    - a cluster that may still add GPU nodes (an address, ``RAY_ADDRESS``, a Ray worker process
      not started under ``init_ray``): log a warning and let the request wait for them.
    """
    if needed <= 0:
        return
    have = cluster_gpus()
    if have >= needed:
        return
    resources = _describe(ray.cluster_resources()) if ray.is_initialized() else "Ray not started"
    msg = (
        f"{flag} asks for {needed:g} GPU{'' if needed == 1 else 's'}"
        f"{f' ({per})' if per else ''} but the Ray cluster has {have:g} ({resources})"
    )
    most = _autoscaler_max_gpus()
    if most is not None and most >= needed:
        logger.warning("%s; waiting for the autoscaler to add GPU nodes (up to %g GPUs)", msg, most)
        return
    if most is not None or _local_ray():
        why = (
            f"its autoscaler offers at most {most:g}"
            if most is not None
            else "it is a local Ray that no GPU node can join"
        )
        raise GPUUnavailableError(
            f"{msg}: {why}, so the request would wait forever. Drop {flag} to run on CPU, or run "
            "on a machine or cluster with GPUs"
        )
    logger.warning(
        "%s: it waits until GPU nodes join (an autoscaler adding them); if the cluster has no GPU "
        "node type it waits forever: stop it and drop %s",
        msg,
        flag,
    )
