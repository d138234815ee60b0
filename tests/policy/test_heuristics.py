"""The production heuristics: one-hot rows, and in the simulator every landing is the page the
rule names (last exited page; most landed-on page over 14 days)."""

from __future__ import annotations

import numpy as np
import pytest

from glan_ray.policy.heuristics import LastExitPolicy, MostVisitedPolicy, one_hot
from glan_ray.schema import OBS_FEATURES
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate

CFG = SimConfig(seed=4, block_size=100)
LAST_EXIT = [OBS_FEATURES.index(f"last_exit_{p}") for p in ("featured", "explore", "following")]


def test_one_hot_by_hand():
    np.testing.assert_array_equal(
        one_hot(np.array([2, 0, 1, 2], dtype=np.int8)),
        [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]],
    )
    assert one_hot(np.array([4]), n=5).tolist() == [[0, 0, 0, 0, 1]]
    assert one_hot(np.zeros(0, dtype=np.int64)).shape == (0, 3)
    with pytest.raises(IndexError):
        one_hot(np.array([3]))  # not a page


def test_last_exit_lands_on_the_last_exited_page():
    logs = list(simulate(CFG, 0, 200, 2, LastExitPolicy()))
    for log in logs:
        s = log.sessions
        np.testing.assert_array_equal(s["action"], s["obs"][:, LAST_EXIT].argmax(1))
        np.testing.assert_array_equal(s["propensity"], 1.0)  # deterministic
        # from the second session of a day on, that is where the previous session ended
        later = np.flatnonzero(s["session_idx"] > 0)
        prev_seq, prev_len = s["page_seq"][later - 1], s["seq_len"][later - 1]
        np.testing.assert_array_equal(
            s["action"][later], prev_seq[np.arange(later.size), prev_len - 1]
        )
    assert len({int(a) for log in logs for a in log.sessions["action"]}) > 1


def test_most_visited_lands_on_the_most_landed_on_page_of_14_days():
    logs = list(simulate(CFG, 0, 200, 2, MostVisitedPolicy()))
    for log in logs:
        s = log.sessions
        want = log.stats["page_entries_14d"].argmax(1)[s["row"]]
        np.testing.assert_array_equal(s["action"], want)
        np.testing.assert_array_equal(s["propensity"], 1.0)
        # one page per user all day: the statistic only changes overnight
        for row in np.unique(s["row"]):
            assert len(set(s["action"][s["row"] == row])) == 1
