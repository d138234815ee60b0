"""Inference-time landing-page policies behind the simulator's ``Policy`` interface.

``make_arm(name, models_dir, cfg)`` builds any of them by name (see ``registry.ARMS``):
heuristics, KLAN (ISP + IIT CQL fused by AM), GLAN (L-RTG -> DT -> HRM loop) and its ablations,
DT and CQL alone, the logging policy and the oracle. Models are the exported torch checkpoints
(``glan_ray.models.checkpoint``), loaded without Ray or RLlib.
"""
