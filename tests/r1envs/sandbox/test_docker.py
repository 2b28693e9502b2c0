"""DockerSandbox specifics (the hostile suite runs against it too, in test_hostile.py)."""

from __future__ import annotations

import pytest

from r1envs.verifiers.code import run_tests
from tests.r1envs.sandbox.conftest import docker_sandbox_or_skip

pytestmark = pytest.mark.docker

PROBLEM = {
    "question": "Print a+b.",
    "test_style": "stdio",
    "tests": [{"input": "1 2\n", "output": "3\n"}, {"input": "2 2\n", "output": "4\n"}],
}
SOLUTION = "a, b = map(int, input().split())\nprint(a + b)\n"


@pytest.fixture(scope="module")
def docker_sandbox():
    sandbox = docker_sandbox_or_skip()
    yield sandbox
    sandbox.close()


def test_containers_are_locked_down(docker_sandbox):
    assert run_tests(SOLUTION, PROBLEM, docker_sandbox).passed
    box = docker_sandbox._all[0]
    box.obj.reload()
    host = box.obj.attrs["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Memory"] == host["MemorySwap"] > 0
    assert host["PidsLimit"] == docker_sandbox.pids_limit
    assert "/tmp" in host["Tmpfs"]
    assert box.obj.attrs["Config"]["User"].startswith("65534")


def test_several_engines_form_one_pool():
    from r1envs.sandbox.docker import DockerSandbox

    docker_sandbox_or_skip().close()
    sandbox = DockerSandbox(workers=2, base_url=["unix:///var/run/docker.sock"] * 2)
    try:
        assert all(run_tests(SOLUTION, PROBLEM, sandbox).passed for _ in range(3))
    finally:
        sandbox.close()


def test_an_unreachable_engine_is_an_error_not_a_fail():
    from r1envs.sandbox.docker import DockerSandbox

    sandbox = DockerSandbox(workers=1, base_url="tcp://127.0.0.1:9")
    result = run_tests(SOLUTION, PROBLEM, sandbox)
    assert not result.passed and result.error and "sandbox failed" in result.error


def test_env_kwarg_docker_uses_the_docker_sandbox():
    import gymnasium as gym

    docker_sandbox_or_skip().close()
    env = gym.make("r1/Code-v0", sandbox="docker", problems=[PROBLEM])
    env.reset(seed=0)
    _, _, _, _, info = env.step(f"```python\n{SOLUTION}```")
    assert info["correct"] and info["error"] is None
    assert env.unwrapped.task.sandbox.isolation == "docker"
    env.close()
