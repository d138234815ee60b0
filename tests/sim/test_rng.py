"""Common random numbers: keyed generators, user blocks, and draws cut to the users that exist."""

from __future__ import annotations

import numpy as np
import pytest

from glan_ray.sim.rng import STREAMS, block_rng, blocks_of, draw


def _uniforms(rng: np.random.Generator, m: int) -> dict[str, np.ndarray]:
    return {"u": rng.random(m), "z": rng.normal(size=(m, 2))}


def test_block_rng_is_a_pure_function_of_its_key():
    a = block_rng(7, 2, 5, "day").random(8)
    np.testing.assert_array_equal(a, block_rng(7, 2, 5, "day").random(8))
    # every component of the key changes the numbers; numpy ints are accepted like ints
    for other in [(8, 2, 5, "day"), (7, 3, 5, "day"), (7, 2, 6, "day"), (7, 2, 5, "rct")]:
        assert not np.array_equal(a, block_rng(*other).random(8)), other
    np.testing.assert_array_equal(
        a, block_rng(np.int64(7), np.int32(2), np.int8(5), "day").random(8)
    )
    # day -1 (before day 0) is its own key, distinct from day 0
    assert not np.array_equal(
        block_rng(0, 0, -1, "users").random(4), block_rng(0, 0, 0, "users").random(4)
    )


def test_streams_have_distinct_numbers_and_unknown_streams_are_refused():
    assert len(set(STREAMS.values())) == len(STREAMS)
    draws = {s: block_rng(1, 0, 0, s).random(4).tobytes() for s in STREAMS}
    assert len(set(draws.values())) == len(STREAMS)
    with pytest.raises(KeyError, match="weather"):
        block_rng(1, 0, 0, "weather")


def test_blocks_of_by_hand():
    assert blocks_of(0, 250, 100) == [(0, 100), (1, 100), (2, 50)]
    assert blocks_of(300, 100, 100) == [(3, 100)]
    assert blocks_of(200, 1, 100) == [(2, 1)]
    assert blocks_of(0, 0, 100) == []
    with pytest.raises(ValueError, match=r"first_user=150 must be a multiple of block_size=100"):
        blocks_of(150, 10, 100)


def test_draw_makes_whole_blocks_and_cuts_them_to_the_users():
    sizes = []

    def fn(rng: np.random.Generator, m: int) -> dict[str, np.ndarray]:
        sizes.append(m)
        return _uniforms(rng, m)

    d = draw(blocks_of(0, 250, 100), seed=3, day=4, stream="day", block_size=100, fn=fn)
    assert sizes == [100, 100, 100]  # always a whole block, whatever the users in it
    assert d["u"].shape == (250,) and d["z"].shape == (250, 2)
    # block b's users are the first n rows of block b's generator
    for b, lo, n in [(0, 0, 100), (1, 100, 100), (2, 200, 50)]:
        want = _uniforms(block_rng(3, b, 4, "day"), 100)
        np.testing.assert_array_equal(d["u"][lo : lo + n], want["u"][:n])
        np.testing.assert_array_equal(d["z"][lo : lo + n], want["z"][:n])


def test_a_users_numbers_do_not_depend_on_the_population_or_the_shards():
    whole = draw(blocks_of(0, 500, 100), 9, 2, "day", 100, _uniforms)
    part = draw(blocks_of(200, 130, 100), 9, 2, "day", 100, _uniforms)
    np.testing.assert_array_equal(part["u"], whole["u"][200:330])
    np.testing.assert_array_equal(part["z"], whole["z"][200:330])
    # two shards of the same range concatenate to the one-shard draw
    a = draw(blocks_of(0, 200, 100), 9, 2, "day", 100, _uniforms)
    b = draw(blocks_of(200, 300, 100), 9, 2, "day", 100, _uniforms)
    np.testing.assert_array_equal(np.concatenate([a["u"], b["u"]]), whole["u"])
