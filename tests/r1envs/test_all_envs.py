"""Contract checks run on every registered id."""

from __future__ import annotations

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import r1envs

ENV_IDS = r1envs.list_envs("r1")
MIXES = {"r1/Math-v0", "r1/Code-v0", "r1/Logic-v0"}


def test_required_ids_registered():
    for env_id in ("r1/Math-v0", "r1/Arithmetic-v0"):
        assert env_id in ENV_IDS


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_check_env(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_contract(env_id):
    env = gym.make(env_id)
    obs, info = env.reset(seed=123)
    obs2, info2 = env.reset(seed=123)
    assert obs == obs2 and info["problem"] == info2["problem"]
    assert isinstance(obs, str) and env.observation_space.contains(obs)
    assert [m["role"] for m in info["messages"]] == ["system", "user"]
    for action in ("", "random words 你好 \x00", "<think> x </think> <answer> 0 </answer>"):
        env.reset(seed=5)
        _, reward, terminated, truncated, step_info = env.step(action)
        assert type(reward) is float and type(terminated) is bool and type(truncated) is bool
        assert set(step_info["rewards"]) >= {"accuracy", "format", "language"}
        assert all(type(v) is float for v in step_info["rewards"].values())
        assert type(step_info["correct"]) is bool
        assert "extracted_answer" in step_info and step_info["error"] is None
    env.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_envs(mode):
    for env_id in ENV_IDS:
        envs = gym.make_vec(env_id, num_envs=2, vectorization_mode=mode)
        obs, infos = envs.reset(seed=[7, 7])
        assert obs[0] == obs[1], env_id
        _, rewards, terminated, _, _ = envs.step(("<answer>0</answer>", "x"))
        assert len(rewards) == 2 and all(terminated)
        envs.close()
