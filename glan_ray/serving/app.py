"""The application builder: ``glan_ray.serving.app:build_app`` (``serve run serve/config.yaml``).

``args`` (all optional):
- ``models``: directory of exported models (``lrtg``, ``hrm``, ``dt``, and for KLAN ``isp``,
  ``cql``, ``am``); default ``runs/demo/models``.
- ``policy``: ``glan`` (default) or ``klan``; switchable later with ``reconfigure``.
- ``use_lrtg`` / ``use_hrm``: false serves the ablations (R̂₁ = 7-day mean; naive reward).
- ``state_store``: ``embedded`` (default) or a ``redis://`` URL.
- ``num_gpus``: GPUs per DT replica (0 on CPU machines); ``num_cpus``: CPUs per model replica.
- ``min_replicas`` / ``max_replicas``: autoscaling bounds of the DT deployment.
"""

from __future__ import annotations

import os
from typing import Any

from ray.serve import Application

from glan_ray.serving.ingress import Ingress
from glan_ray.serving.models import DTModel, HRMModel, KlanModel, LRTGModel

KNOWN = {"models", "policy", "use_lrtg", "use_hrm", "state_store", "num_gpus", "num_cpus",
         "min_replicas", "max_replicas"}  # fmt: skip


def build_app(args: dict[str, Any] | None = None) -> Application:
    args = dict(args or {})
    unknown = sorted(set(args) - KNOWN)
    if unknown:
        raise ValueError(f"unknown app arg(s): {', '.join(unknown)}; valid: {sorted(KNOWN)}")
    models = os.path.abspath(args.get("models", "runs/demo/models"))

    def path(name: str) -> str | None:
        p = os.path.join(models, name)
        return p if os.path.exists(os.path.join(p, "model.pt")) else None

    if path("dt") is None:
        raise FileNotFoundError(f"no exported DT at {models}/dt (glan-ray train dt)")
    cpus = float(args.get("num_cpus", 0.25))
    lrtg = LRTGModel.options(
        user_config={"path": path("lrtg") if args.get("use_lrtg", True) else None},
        ray_actor_options={"num_cpus": cpus / 2},
    ).bind()
    hrm = HRMModel.options(
        user_config={"path": path("hrm") if args.get("use_hrm", True) else None},
        ray_actor_options={"num_cpus": cpus / 2},
    ).bind()
    dt = DTModel.options(
        user_config={"path": path("dt")},
        ray_actor_options={"num_cpus": cpus, "num_gpus": float(args.get("num_gpus", 0))},
        autoscaling_config={
            "min_replicas": int(args.get("min_replicas", 1)),
            "max_replicas": int(args.get("max_replicas", 2)),
            "target_ongoing_requests": 16,
        },
        max_ongoing_requests=64,
    ).bind()
    klan_paths = {k: path(k) for k in ("isp", "cql", "am")}
    klan = (
        KlanModel.options(user_config=klan_paths, ray_actor_options={"num_cpus": cpus / 2}).bind()
        if all(klan_paths.values())
        else None
    )
    return Ingress.options(user_config={"policy": args.get("policy", "glan")}).bind(
        lrtg, dt, hrm, klan, args.get("state_store")
    )
