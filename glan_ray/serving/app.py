"""The application builder: ``glan_ray.serving.app:build_app`` (``serve run serve/config.yaml``).

``args`` (all optional):
- ``models``: directory of exported models (``lrtg``, ``hrm``, ``dt``, and for KLAN ``isp``,
  ``cql``, ``am``); default ``runs/demo/models``. The Serve app serves the app spec the DT
  export records (``models.exports``: its ``app_spec``; docs/apps.md): its request bodies, pages
  and observations. Every other export in the directory (``EXPORTS``, served or not) and the
  critic must record the same spec: one of another app is refused when the app is built, before
  any replica, naming the difference. KLAN and the
  decision log serve the PLPM app only (another app is served without them).
- ``policy``: ``glan`` (default) or ``klan``; switchable later with ``reconfigure``.
- ``exploration``: how the page is drawn from the policy's π (``policy.explore``): ``greedy``
  (default: argmax, propensity 1), ``epsilon=E`` or ``softmax[=T]``. A deployment that collects
  training data uses ``policy.explore.DEPLOY_DEFAULT`` (``epsilon=0.1``, as
  ``serve/config.yaml``). ``explore_seed`` (int, default 0): the seed of the per-entry draw.
- ``decision_log``: write every applied event to the decision log in the state store (default
  true; ``glan-ray logs-to-datasets --flush`` moves it to Parquet).
- ``use_lrtg`` / ``use_hrm``: false serves the ablations (R̂₁ = 7-day mean; naive reward).
- ``critic_lambda``: serve critic-guided GLAN (the simulator's ``glan_cg`` arm) with this λ ≥ 0
  and ``cql`` as the critic: the page is argmax_a [log π_DT(a | h) + λ·Â(s, a)/T]
  (``policy.glan_step.critic_guided_scores``); absent or null: GLAN as published.
- ``state_store``: ``embedded`` (default: an SQLite file, ``runs/serve/state.sqlite3`` under
  the directory ``serve run`` starts in, kept across restarts; one machine), ``sqlite:///path``,
  or a ``redis://`` URL (a cluster).
- ``api_key_env``: the environment variable holding the bearer API key (default
  ``GLAN_RAY_API_KEY``); with it set, every user route needs ``Authorization: Bearer <key>``.
  Serve's HTTP host beyond loopback (``http_options.host`` other than 127.0.0.1 / localhost /
  ::1) without a key is refused when the app is built.
- ``num_gpus``: GPUs per DT replica (0 on CPU machines; with ``colocate_models``, per ingress
  replica). When the cluster lacks them, the builder raises on an embedded local Ray (the
  replicas would pend forever) and warns on a cluster that may still add GPU nodes
  (``runtime.require_gpus``). ``num_cpus``: CPUs per model replica.
- ``min_replicas`` / ``max_replicas``: autoscaling bounds of the DT deployment.
- ``access_log``: Serve's per-request access log lines in every replica (default false: on
  the hot path they cost more CPU than the models' small calls).
- ``ingress_replicas``: replicas of the HTTP ingress (default 1); each caches the users it
  serves and writes through to the state store with compare-and-set, so any number is correct.
- ``colocate_models``: false (default) serves DT and HRM as their own deployments behind
  ``DeploymentHandle``s; true loads them inside each ingress replica instead (in-process calls,
  still coalesced per batch of requests; the checkpoints become the ingress's ``user_config``
  ``dt`` / ``hrm``). That saves two handle hops per entry + session end on a small CPU box, at
  the cost of scaling the DT with the ingress rather than on its own.

For latency, start Ray with ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` in the environment (see the
docs/serving.md and ``bench/serve_load.py``).
"""

from __future__ import annotations

import os
from typing import Any

from ray.serve import Application

from glan_ray import storage
from glan_ray.apps import AppSpec, plpm_spec
from glan_ray.models.app_check import META, export_app
from glan_ray.policy import glan_step
from glan_ray.runtime import require_gpus
from glan_ray.serving.deployments import (
    DTModel,
    HRMModel,
    KlanModel,
    LRTGModel,
    check_export_app,
)
from glan_ray.serving.ingress import Ingress, parse_user_config
from glan_ray.serving.state import DEFAULT_PATH

KNOWN = {"models", "policy", "use_lrtg", "use_hrm", "state_store", "num_gpus", "num_cpus",
         "min_replicas", "max_replicas", "ingress_replicas", "access_log",
         "colocate_models", "api_key_env", "exploration", "explore_seed",
         "decision_log", "critic_lambda"}  # fmt: skip
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
EXPORTS = ("dt", "lrtg", "hrm", "isp", "cql", "am")
"""The exports a models directory may hold for Serve: every one there must be of the DT's app."""


def _serve_http_host() -> str:
    """The host Serve's HTTP proxy binds (127.0.0.1, Serve's default, when Serve is not up)."""
    import ray
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    if not ray.is_initialized():
        return "127.0.0.1"
    try:
        controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        return str(ray.get(controller.get_http_config.remote(), timeout=30).host)
    except (ValueError, ray.exceptions.RayError):  # no controller yet: serve.run starts it
        return "127.0.0.1"


def _api_key(env: str) -> str | None:
    key = os.environ.get(env) or None
    host = _serve_http_host()
    if key is None and host not in LOOPBACK:
        raise ValueError(
            f"Serve's HTTP host is {host!r} (beyond loopback) and no API key is set: export "
            f"{env}=<secret> before serve run (clients send Authorization: Bearer <secret>), or "
            "bind http_options.host: 127.0.0.1"
        )
    return key


def _state_store(url: str | None) -> str:
    """``embedded`` -> the SQLite file's absolute path (replicas may run elsewhere on disk)."""
    if not url or url == "embedded":
        return "sqlite://" + os.path.abspath(DEFAULT_PATH)
    return url


def _critic(args: dict[str, Any], cql: str | None, models: str) -> dict[str, Any]:
    """The DT deployment's critic fields (``DTModel``) from app arg ``critic_lambda``: none
    without it; else the ``cql`` export and λ, both checked here."""
    if args.get("critic_lambda") is None:
        return {}
    try:
        lam = glan_step.critic_lambda(args["critic_lambda"])
    except ValueError as e:
        raise ValueError(f"app arg {e}") from None
    if cql is None:
        raise FileNotFoundError(f"app arg critic_lambda needs the critic: no exported CQL at "
                                f"{models}/cql (glan-ray train cql)")  # fmt: skip
    return {"critic": cql, "critic_lambda": lam}


def build_app(args: dict[str, Any] | None = None) -> Application:
    """The GLAN app (see the module docstring for ``args``); unknown keys raise."""
    args = dict(args or {})
    unknown = sorted(set(args) - KNOWN)
    if unknown:
        raise ValueError(f"unknown app arg(s): {', '.join(unknown)}; valid: {sorted(KNOWN)}")
    models = str(args.get("models", "runs/demo/models"))
    if not storage.is_uri(models):  # replicas may run in another working directory
        models = os.path.abspath(models)

    def path(name: str) -> str | None:
        p = storage.join(models, name)
        return p if storage.exists(storage.join(p, "model.pt")) else None

    if path("dt") is None:
        raise FileNotFoundError(f"no exported DT at {models}/dt (glan-ray train dt)")
    spec = served_app(str(path("dt")))
    plpm = spec.fingerprint() == plpm_spec().fingerprint()
    app = {"app": spec.to_dict()}
    colocate = bool(args.get("colocate_models", False))
    cpus = float(args.get("num_cpus", 0.25))
    gpus = float(args.get("num_gpus", 0))
    replicas = int(args.get("ingress_replicas" if colocate else "min_replicas", 1))
    per = f"{gpus:g} per {'ingress' if colocate else 'DT'} replica"
    require_gpus("app arg num_gpus", gpus * max(replicas, 1), per)
    log = {"enable_access_log": bool(args.get("access_log", False))}
    hrm_path = path("hrm") if args.get("use_hrm", True) else None
    # @serve.deployment made these Deployments; mypy types a decorated class as the class, hence
    # each .options call's attr-defined suppression
    lrtg = LRTGModel.options(  # type: ignore[attr-defined]
        user_config={"path": path("lrtg") if args.get("use_lrtg", True) else None, **app},
        ray_actor_options={"num_cpus": cpus / 2},
        logging_config=log,
    ).bind()
    hrm = HRMModel.options(  # type: ignore[attr-defined]
        user_config={"path": hrm_path, **app},
        ray_actor_options={"num_cpus": cpus / 2},
        logging_config=log,
    )
    dt_config = {"path": path("dt"), **_critic(args, path("cql"), models), **app}
    dt = DTModel.options(  # type: ignore[attr-defined]
        logging_config=log,
        user_config=dt_config,
        ray_actor_options={"num_cpus": cpus, "num_gpus": gpus},
        autoscaling_config={
            "min_replicas": int(args.get("min_replicas", 1)),
            "max_replicas": int(args.get("max_replicas", 2)),
            # each DT request is one ingress's coalesced batch: scale out when batches queue
            "target_ongoing_requests": 1,
        },
        max_ongoing_requests=64,
    )
    klan_paths = {k: path(k) if plpm else None for k in ("isp", "cql", "am")}
    # every export of the directory, served or not, and the critic: refused now, not in a replica
    exports = [hrm_path, dt_config.get("critic"), *(path(k) for k in EXPORTS)]
    for export in dict.fromkeys(p for p in exports if p):
        check_export_app(export, spec)
    klan = (
        KlanModel.options(  # type: ignore[attr-defined]
            user_config=klan_paths, ray_actor_options={"num_cpus": cpus / 2}, logging_config=log
        ).bind()
        if all(klan_paths.values())
        else None
    )
    user_config: dict[str, Any] = {
        "policy": args.get("policy", "glan"),
        "exploration": args.get("exploration", "greedy"),
        "seed": args.get("explore_seed", 0),
        "decision_log": args.get("decision_log", plpm),
    }
    try:  # refuse a bad value now, naming the app arg, rather than in a replica
        parse_user_config(user_config, spec)
    except ValueError as e:
        msg = str(e).replace("user_config.seed", "explore_seed").replace("user_config.", "")
        raise ValueError(f"app arg {msg}") from None
    options: dict[str, Any] = {}
    if colocate:  # the models live in the ingress: its user_config names their checkpoints
        colocated = {k: v for k, v in dt_config.items() if k not in ("path", "app")}
        user_config.update(dt=path("dt"), hrm=hrm_path, **colocated)
        options["ray_actor_options"] = {
            "num_cpus": cpus * 1.5,
            "num_gpus": gpus,
        }
    ingress = Ingress.options(  # type: ignore[attr-defined]
        user_config=user_config,
        num_replicas=int(args.get("ingress_replicas", 1)),
        logging_config=log,
        **options,
    )
    store = _state_store(args.get("state_store"))
    key = _api_key(str(args.get("api_key_env", "GLAN_RAY_API_KEY")))
    if colocate:
        return ingress.bind(lrtg, None, None, klan, store, api_key=key, app=app["app"])
    return ingress.bind(lrtg, dt.bind(), hrm.bind(), klan, store, api_key=key, app=app["app"])


def served_app(dt: str) -> AppSpec:
    """The app spec the Serve app serves: the one the DT export at ``dt`` records (reading its
    ``config.json`` only; an export written before specs were recorded: the PLPM app)."""
    return export_app(storage.read_json(storage.join(dt, META)))
