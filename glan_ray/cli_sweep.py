"""``glan-ray sweep-worlds``: the map of where each method wins (``glan_ray.sweep``)."""

from __future__ import annotations

import argparse


def _floats(text: str) -> tuple[float, ...]:
    """``0,0.5,1`` -> (0.0, 0.5, 1.0), for argparse's ``type=``."""
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        msg = f"expected comma-separated numbers; got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def add_sweep_worlds(sub: argparse._SubParsersAction) -> None:
    from glan_ray.pipeline import PRESETS
    from glan_ray.sweep.cell import CELL_ARMS, CELL_STAGES, WorldSweepConfig

    d = WorldSweepConfig()
    p = sub.add_parser(
        "sweep-worlds",
        help="map which method wins across simulated worlds (a Ray Tune grid)",
        description="A Ray Tune grid over worlds: the --world's mechanisms at each of "
        "--strengths (0: the default world, 1: the named world) x each user --stochasticities "
        "(multiplier of the page durations' noise). Each cell is a Tune trial that runs the "
        "pipeline's stages " + ", ".join(CELL_STAGES) + " at the --preset's budget, tunes "
        "critic-guided GLAN's lambda on validation users, and plays the A/B of "
        + ", ".join(CELL_ARMS) + ". Writes world_map.png (best GLAN variant - KLAN usage per "
        "cell, with its CI and the winner), world_map.json and world_map.md (premise "
        "diagnostics per cell and their rank correlation with the gap) under --out. Cells "
        "already done are not run again. docs/evaluation.md, 'The world sweep'.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", default=d.out, help="directory of the cells and the map")
    p.add_argument("--world", default=d.world, help="the named world whose mechanisms scale")
    p.add_argument("--strengths", type=_floats, default=d.strengths,
                   help="premise strengths, comma-separated")  # fmt: skip
    p.add_argument("--stochasticities", type=_floats, default=d.stochasticities,
                   help="multipliers of the page-duration noise, comma-separated")  # fmt: skip
    p.add_argument("--preset", default=d.preset, choices=list(PRESETS),
                   help="training budget and A/B size of every cell")  # fmt: skip
    p.add_argument("--seed", type=int, default=d.seed, help="simulator seed of each cell")
    p.add_argument("--lambdas", type=_floats, default=d.lambdas,
                   help="critic-guided GLAN's lambda grid, tuned per cell")  # fmt: skip
    p.add_argument("--lambda-users", type=int, default=d.lambda_users,
                   help="validation users of the lambda tuning (default: 1000; tiny: 100)")
    p.add_argument("--concurrent", type=int, default=d.concurrent,
                   help="cells at once (on a cluster: as many as its nodes hold)")
    p.add_argument("--cell-memory-gb", type=float, default=d.cell_memory_gb,
                   help="Ray logical memory each cell reserves")
    p.add_argument("--map-only", action="store_true",
                   help="no Tune run: write the map of the cells done under --out (a partial "
                   "sweep's, or after a change to the report)")  # fmt: skip
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or local Ray)")
    p.set_defaults(func=_run_sweep_worlds)


def _run_sweep_worlds(args: argparse.Namespace) -> int:
    import os

    from glan_ray.runtime import init_ray
    from glan_ray.sweep.cell import WorldSweepConfig
    from glan_ray.sweep.run import map_cells, sweep_worlds

    cfg = WorldSweepConfig(
        out=args.out, world=args.world, strengths=args.strengths,
        stochasticities=args.stochasticities, preset=args.preset, seed=args.seed,
        lambdas=args.lambdas, lambda_users=args.lambda_users, concurrent=args.concurrent,
        cell_memory_gb=args.cell_memory_gb,
    )  # fmt: skip
    if args.map_only:
        wmap = map_cells(cfg)
    else:
        print(f"sweep-worlds: {len(cfg.cells)} cells ({args.preset} preset) under {cfg.out}",
              flush=True)  # fmt: skip
        init_ray(args.address)
        wmap = sweep_worlds(cfg)
    print(wmap.markdown())
    print(f"map: {os.path.join(cfg.out, 'world_map.png')}, world_map.json, world_map.md")
    return 0 if not wmap.failed else 1


__all__ = ["add_sweep_worlds"]
