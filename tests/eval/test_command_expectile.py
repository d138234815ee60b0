"""The command heads' τ tuning refuses what it cannot play before playing anything."""

from __future__ import annotations

import pytest

from glan_ray.eval.command_expectile import tune_command_expectile
from glan_ray.eval.critic_lambda import LambdaPlay


def test_expectile_grid_and_the_dt_are_checked_before_any_play(random_models):
    play = LambdaPlay(models=random_models, arm="glan_act")
    for bad in ([0.9], [0.5, 1.0], [0.0, 0.5]):
        with pytest.raises(ValueError, match=r"expectiles: need at least two values in \(0, 1\)"):
            tune_command_expectile(play, "/nope", bad)
    # the fixture's dt_act carries a command head but records no critic it was trained with
    with pytest.raises(ValueError, match="dt_act was trained with neither act_critic nor"):
        tune_command_expectile(play, "/nope", [0.5, 0.9])
    with pytest.raises(ValueError, match="arm 'glan' has no command head"):
        tune_command_expectile(LambdaPlay(models=random_models, arm="glan"), "/nope", [0.5, 0.9])
