"""The hostile cases as acceptance runs them: one fresh judge process per case, per-test limits
of 4 s and 512 MiB, inside an outer cgroup of 512 MiB that must never be what stops a case.
Slow (about a minute per isolation kind): ``pytest -m slow tests/r1envs/sandbox``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from r1envs.sandbox import _cgroup
from tests.r1envs.sandbox import test_hostile as hostile
from tests.r1envs.sandbox.conftest import make_sandbox

pytestmark = pytest.mark.slow

OUTER = 512 << 20
CASES = {
    **{
        k: (c, hostile.SQUARE)
        for k, c in {**hostile.ASSERT_HACKS, **hostile.RESOURCE_BOMBS}.items()
    },
    **{k: (c, hostile.SUM) for k, c in hostile.STDIO_HACKS.items()},
}
JUDGE = """
import json, sys, time
from r1envs.sandbox import LocalSandbox
from r1envs.verifiers.code import run_tests
code, problem, isolation = json.loads(sys.stdin.read())
sandbox = LocalSandbox(workers=1, isolation=isolation)
start = time.monotonic()
result = run_tests(code, problem, sandbox)
print(json.dumps({"passed": result.passed, "error": result.error,
                  "seconds": time.monotonic() - start}))
sandbox.close()
"""


@pytest.mark.parametrize("isolation", ["bwrap", "unshare"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_case_in_a_512_mib_outer_cgroup(isolation, name):
    make_sandbox(isolation).close()  # skips where this isolation cannot run
    group = _cgroup.create("r1accept")
    if group is None:
        pytest.skip("no writable memory+pids cgroup on this machine")
    try:
        group.set_memory(OUTER)
        group.set_pids(512)
        group.nestable()
        procs = group.procs_files()

        def join() -> None:
            for path in procs:
                with open(path, "w") as fh:
                    fh.write(str(os.getpid()))

        code, problem = CASES[name]
        problem = {**problem, "time_limit_s": 4.0, "memory_limit_mb": 512}
        out = subprocess.run(
            [sys.executable, "-c", JUDGE],
            input=json.dumps([code, problem, isolation]),
            capture_output=True,
            text=True,
            preexec_fn=join,
            timeout=120,
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))),
        )
        assert out.returncode == 0, out.stderr[-2000:]
        verdict = json.loads(out.stdout.strip().splitlines()[-1])
        hits = group.hit_limits()
    finally:
        group.remove()
    assert verdict["error"] is None and not verdict["passed"], verdict
    assert not any(hits.values()), f"the outer cgroup stopped the case: {hits}"
