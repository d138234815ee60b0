"""Hashes of user ids: the bucket of a user in the shuffle by user (``bucket_of``), and a
fixed-size sketch of a batch's users whose merge counts the distinct users of the input
(``user_sketch``, ``distinct_users``: what sizes the buckets)."""

from __future__ import annotations

import numpy as np


def mix64(user_id: np.ndarray) -> np.ndarray:
    """(N,) uint64 the splitmix64 finaliser of each id: consecutive or strided ids spread
    evenly over the 64 bits."""
    x = np.asarray(user_id).astype(np.uint64)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def bucket_of(user_id: np.ndarray, buckets: int) -> np.ndarray:
    """(N,) int64 bucket of each user id in [0, buckets): ``mix64`` of the id modulo
    ``buckets``."""
    return (mix64(user_id) % np.uint64(buckets)).astype(np.int64)


SKETCH_SIZE = 4096
"""Hashes kept by a ``user_sketch``: distinct users are counted exactly up to this many, and
within about 1/sqrt(SKETCH_SIZE) (1.6%) above."""


def user_sketch(user_id: np.ndarray) -> np.ndarray:
    """The ``SKETCH_SIZE`` smallest distinct ``mix64`` hashes of some users (sorted uint64): a
    fixed-size summary of a batch's users that merges across batches (``distinct_users``)."""
    return np.unique(mix64(user_id))[:SKETCH_SIZE]


def distinct_users(sketches: list[np.ndarray]) -> int:
    """The number of distinct users over the batches of ``sketches`` (a k-minimum-values
    estimate: exact when they hold fewer than ``SKETCH_SIZE`` users)."""
    merged = np.unique(np.concatenate([np.asarray(s, dtype=np.uint64) for s in sketches])
                       ) if sketches else np.zeros(0, np.uint64)  # fmt: skip
    if len(merged) < SKETCH_SIZE:
        return len(merged)
    kth = float(merged[SKETCH_SIZE - 1]) + 1.0
    return round((SKETCH_SIZE - 1) * 2.0**64 / kth)


__all__ = ["SKETCH_SIZE", "bucket_of", "distinct_users", "mix64", "user_sketch"]
