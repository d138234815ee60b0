"""Common random numbers: every draw is keyed by (seed, user block, day, stream).

Draws are always made for a whole block of ``block_size`` users and then cut to the users that
exist, so a user's random numbers do not depend on the population size, on the shard layout, or
on which policy is being run (SPEC §1, property 9).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

STREAMS: dict[str, int] = {"users": 1, "init": 2, "day": 3, "rct": 4, "regime": 5}
"""Independent random streams; a new stream gets a new number, never a reused one."""


def block_rng(seed: int, block: int, day: int, stream: str) -> np.random.Generator:
    """The generator of one (seed, block, day, stream) key. ``day`` may be -1 (before day 0)."""
    key = [int(seed), int(block), int(day) + 1, STREAMS[stream]]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(key)))


def blocks_of(first_user: int, n_users: int, block_size: int) -> list[tuple[int, int]]:
    """(block id, users of that block in range) for the user range [first, first + n)."""
    if first_user % block_size:
        raise ValueError(f"first_user={first_user} must be a multiple of block_size={block_size}")
    out = []
    end = first_user + n_users
    for start in range(first_user, end, block_size):
        out.append((start // block_size, min(block_size, end - start)))
    return out


def draw(
    blocks: Sequence[tuple[int, int]],
    seed: int,
    day: int,
    stream: str,
    block_size: int,
    fn: Callable[[np.random.Generator, int], dict[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """Call ``fn(rng, block_size)`` per block, cut each array to the block's users, concatenate.

    ``fn`` must return arrays whose first axis is the user axis and must only use draws whose
    shape does not depend on anything policy-dependent.
    """
    parts: dict[str, list[np.ndarray]] = {}
    for block, n in blocks:
        out = fn(block_rng(seed, block, day, stream), block_size)
        for k, v in out.items():
            parts.setdefault(k, []).append(v[:n])
    return {k: np.concatenate(v, axis=0) for k, v in parts.items()}
