"""External (TorchScript) policies: the spec, the d3rlpy-style DT window, and A/B arms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glan_ray.eval.ab import run_shard
from glan_ray.policy.external import (
    ExternalDTPolicy,
    ExternalQPolicy,
    ExternalSpec,
    dt_window,
    load_external,
    save_external,
)
from glan_ray.policy.registry import make_arm
from glan_ray.schema import N_PAGES, OBS_DIM
from glan_ray.sim.config import SimConfig
from glan_ray.sim.interface import IntraDayHistory, Observation


class FirstScores(torch.nn.Module):
    """Scores = the first three observation features."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs[:, :N_PAGES]


class ReturnObs(torch.nn.Module):
    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs * 1.0


class ConstantScores(torch.nn.Module):
    def __init__(self, page: int) -> None:
        super().__init__()
        self.page = page

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.full_like(obs[:, 0], self.page).long(), N_PAGES)


class ProbeDT(torch.nn.Module):
    """Logits (B, K, 3) = (rtg, timestep / 100, pad + obs[..., 0]) per position."""

    def forward(self, obs, actions, rtg, timesteps, pad):
        return torch.stack([rtg[..., 0], timesteps.float() / 100.0, pad + obs[..., 0]], -1)


def _save(module: torch.nn.Module, spec: ExternalSpec, path) -> str:
    save_external(module, spec, str(path))
    return str(path)


def test_spec_checks_every_field():
    with pytest.raises(ValueError, match="kind"):
        ExternalSpec(kind="policy_gradient")
    with pytest.raises(ValueError, match=r"ExternalSpec\.obs_dim must be >= 28"):
        ExternalSpec(kind="q", obs_dim=27)
    with pytest.raises(ValueError, match=r"ExternalSpec\.context_len must be >= 1"):
        ExternalSpec(kind="dt", context_len=0)
    with pytest.raises(ValueError, match="return_scale"):
        ExternalSpec(kind="dt", return_scale=float("nan"))
    with pytest.raises(ValueError, match=r"unknown field.*temperature"):
        ExternalSpec.from_json('{"kind": "q", "temperature": 1}')
    spec = ExternalSpec(kind="dt", context_len=5, source="x")
    assert ExternalSpec.from_json(spec.to_json()) == spec


def test_file_without_spec_is_refused(tmp_path):
    path = str(tmp_path / "bare.pt2")
    torch.export.save(torch.export.export(FirstScores(), (torch.zeros(2, OBS_DIM),)), path)
    with pytest.raises(ValueError, match=r"no policy\.json"):
        load_external(path)
    (tmp_path / "junk.pt2").write_text("not a program")
    with pytest.raises(ValueError, match=r"not a torch\.export program"):
        load_external(str(tmp_path / "junk.pt2"))


def _obs(x: np.ndarray, length: np.ndarray) -> Observation:
    b = len(x)
    return Observation(
        rows=np.arange(b),
        user_id=np.arange(b),
        obs=x.astype(np.float32),
        hour=np.zeros(b),
        weekday=0,
        entries_today=length,
        last_exit=np.zeros(b, dtype=np.int64),
        most_visited=np.zeros(b, dtype=np.int64),
    )


def test_q_policy_is_greedy_on_the_scores(tmp_path):
    policy = load_external(_save(FirstScores(), ExternalSpec(kind="q"), tmp_path / "q.pt2"))
    assert isinstance(policy, ExternalQPolicy)
    x = np.zeros((3, OBS_DIM))
    x[0, 2], x[1, 0], x[2, 1] = 5.0, 1.0, 0.5
    p = policy.probs(_obs(x, np.zeros(3, dtype=np.int64)), IntraDayHistory.empty(3, 4, OBS_DIM))
    np.testing.assert_array_equal(p.argmax(1), [2, 0, 1])
    np.testing.assert_array_equal(p.sum(1), 1.0)


def test_dt_window_by_hand():
    spec = ExternalSpec(kind="dt", context_len=3, max_timestep=4)
    s, d = 6, OBS_DIM
    past_obs = np.zeros((2, s, d), dtype=np.float32)
    past_obs[:, :, 0] = np.arange(s) + 1.0  # session j has obs[0] = j + 1
    past_actions = np.tile(np.array([1, 2, 0, 1, 2, 0]), (2, 1))
    rewards = np.tile(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 0.0]), (2, 1))
    now = np.full((2, d), 9.0, dtype=np.float32)
    w = dt_window(
        spec, np.array([10.0, 20.0]), past_obs, past_actions, rewards, np.array([1, 4]), now
    )
    # user 0: one finished session -> [pad, s0, now]; user 1: four -> [s2, s3, now]
    np.testing.assert_array_equal(w["pad"], [[1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(w["obs"][:, :, 0], [[0, 1, 9], [3, 4, 9]])
    np.testing.assert_array_equal(w["actions"], [[0, 1, 0], [0, 1, 0]])
    # R̂ = target − rewards before: user 0 [-, 10, 9]; user 1 [20−3, 20−6, 20−10]
    np.testing.assert_allclose(w["rtg"][..., 0], [[0, 10, 9], [17, 14, 10]])
    # timesteps j + 1 capped at max_timestep = 4
    np.testing.assert_array_equal(w["timesteps"], [[0, 1, 2], [3, 4, 4]])
    assert w["obs"].shape == (2, 3, d) and w["rtg"].shape == (2, 3, 1)


def test_dt_policy_feeds_the_module_and_reads_the_last_position(tmp_path):
    spec = ExternalSpec(
        kind="dt", context_len=2, return_scale=0.5, target_gain=2.0, max_timestep=64
    )
    policy = load_external(_save(ProbeDT(), spec, tmp_path / "dt.pt2"))
    assert isinstance(policy, ExternalDTPolicy)
    with pytest.raises(RuntimeError, match="before begin_day"):
        policy.probs(
            _obs(np.zeros((1, OBS_DIM)), np.zeros(1, dtype=np.int64)),
            IntraDayHistory.empty(1, 3, OBS_DIM),
        )
    policy.begin_day(0, {"usage_7d": np.array([1.0, 100.0, 0.1])})
    hist = IntraDayHistory.empty(3, 3, OBS_DIM)
    hist.length[:] = [0, 1, 2]
    hist.usage[1, 0] = 40.0
    hist.usage[2, :2] = [0.1, 0.1]
    x = np.zeros((3, OBS_DIM))
    x[0, 0] = 5.0  # user 0: logits (1, 0.01, 5) -> page 2
    # user 1: R̂ = 2·100·0.5 − 40·0.5 = 80 -> page 0; user 2: R̂ ≈ 0, timestep 3 -> page 1
    p = policy.probs(_obs(x, hist.length.copy()), hist)
    np.testing.assert_array_equal(p.argmax(1), [2, 0, 1])
    with pytest.raises(ValueError, match="target_column 'usage_7d'"):
        policy.begin_day(1, {"usage_30d": np.zeros(3)})


def test_external_arm_plays_in_the_ab_like_the_same_builtin(tmp_path):
    """An external Q policy that always scores Explore highest is ``always_explore``."""
    path = _save(ConstantScores(1), ExternalSpec(kind="q", source="test"), tmp_path / "e.pt2")
    arm = make_arm("peer", None, SimConfig(), external={"peer": path})
    assert arm.name == "peer"
    sim = {"block_size": 100}
    ext = run_shard("peer", None, sim, seed=4, first=0, n=100, days=2, external={"peer": path})
    ref = run_shard("always_explore", None, sim, seed=4, first=0, n=100, days=2)
    assert ext["units"].keys() == ref["units"].keys()
    for k in ref["units"]:
        np.testing.assert_array_equal(ext["units"][k], ref["units"][k], err_msg=k)
    assert ext["decisions"] == ref["decisions"] > 0


def test_save_refuses_a_module_of_the_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match="cannot export the module with the inputs of a 'dt'"):
        save_external(FirstScores(), ExternalSpec(kind="dt"), str(tmp_path / "x.pt2"))
    with pytest.raises(ValueError, match=r"a 'q' policy must return \(3, 3\).*returned \(3, 28\)"):
        save_external(ReturnObs(), ExternalSpec(kind="q"), str(tmp_path / "y.pt2"))
    program = torch.export.export(
        FirstScores(),
        (torch.zeros(2, OBS_DIM),),
        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
    )
    save_external(program, ExternalSpec(kind="q"), str(tmp_path / "ok.pt2"))  # taken as it is
    assert isinstance(load_external(str(tmp_path / "ok.pt2")), ExternalQPolicy)
