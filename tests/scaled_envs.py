"""CartPole-v1 with its rewards multiplied by 0.01 or 100: the same task on other reward scales.

Importing this module registers ``CartPoleRewardX0.01-v1`` and ``CartPoleRewardX100-v1``
(``--env=scaled_envs:<id>`` with ``tests/`` on PYTHONPATH). Returns range over
0..5 and 0..50,000 where plain CartPole's range over 0..500, so an agent whose
updates grow with the returns' scale cannot learn both with one set of defaults.
"""

from __future__ import annotations

import gymnasium

SCALES = {"CartPoleRewardX0.01-v1": 0.01, "CartPoleRewardX100-v1": 100.0}


class ScaledReward(gymnasium.RewardWrapper):
    def __init__(self, env: gymnasium.Env, scale: float):
        super().__init__(env)
        self.scale = scale

    def reward(self, reward):
        return self.scale * reward


def _make(scale: float) -> gymnasium.Env:
    return ScaledReward(gymnasium.make("CartPole-v1"), scale)


for _id, _scale in SCALES.items():
    if _id not in gymnasium.registry:
        gymnasium.register(_id, entry_point=_make, kwargs={"scale": _scale})

# Rewards of 1e30: returns (at most 5e32) stay finite in float32, but a squared value
# error does not, so every update's loss is non-finite (the training guard's end-to-end test).
HUGE_REWARD_ID = "CartPoleRewardX1e30-v1"
if HUGE_REWARD_ID not in gymnasium.registry:
    gymnasium.register(HUGE_REWARD_ID, entry_point=_make, kwargs={"scale": 1e30})
