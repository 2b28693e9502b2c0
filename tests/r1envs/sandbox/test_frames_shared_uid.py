"""The runner where candidates share its uid (Docker's non-root user, an unprivileged
LocalSandbox without namespaces): a candidate can neither forge the runner's reply or the
judge's verdict through ``/proc/PID/fd``, nor stall the runner with a child that keeps
stdout open. Every such attempt is a verdict (fail), never an infrastructure error.

The runner runs as ``nobody`` under the system Python (the harness is stdlib only) in a
mount namespace with a private ``/tmp``, started by this (root) test process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from r1envs.sandbox.base import Sandbox, encode_frame, harness_source, read_frame
from r1envs.verifiers.code import run_tests

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"


class SharedUidRunner(Sandbox):
    """One runner process as ``nobody``; candidates run as ``nobody`` too."""

    isolation = "none"

    def __init__(self) -> None:
        cfg = json.dumps({"uid": NOBODY, "gid": NOBODY, "sweep": False, "pid_ns": False})
        inner = [
            "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            SYSTEM_PYTHON, "-I", "-S", "-c", harness_source(), cfg,
        ]  # fmt: skip
        script = 'mount -t tmpfs -o size=64m tmpfs /tmp && exec "$@"'
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *inner]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd="/", env={"PATH": "/usr/bin:/bin"}
        )  # fmt: skip
        hello = read_frame(self.proc.stdout.fileno(), time.monotonic() + 30)
        assert hello.get("ready"), hello

    def execute(self, request):
        self.proc.stdin.write(encode_frame(request))
        self.proc.stdin.flush()
        reply = read_frame(self.proc.stdout.fileno(), time.monotonic() + 30)
        assert "results" in reply, reply
        assert len(reply) == 1, f"more than one reply: {reply}"
        return reply["results"]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def runner():
    if os.geteuid() != 0:
        pytest.skip("starts the runner as another uid: needs root")
    if not (
        os.access(SYSTEM_PYTHON, os.X_OK) and shutil.which("setpriv") and shutil.which("unshare")
    ):
        pytest.skip("needs /usr/bin/python3, setpriv and unshare")
    box = SharedUidRunner()
    yield box
    box.close()


STDIO = {
    "question": "Print a+b.",
    "test_style": "stdio",
    "tests": [{"input": "1 2\n", "output": "3\n"}, {"input": "4 4\n", "output": "8\n"}],
    "time_limit_s": 1.0,
}
SCRIPT = {
    "question": "Return x + 1.",
    "test_style": "script",
    "entry_point": "f",
    "tests": ["for i in range(3):\n    assert f(i) == i + 1\n"],
    "time_limit_s": 1.0,
}
#: writes a forged frame into every descriptor of every other process of its uid that it can
#: open; returns how many descriptors of the runner (its parent) it opened
FORGE = """
import json, os, signal, struct
signal.signal(signal.SIGPIPE, signal.SIG_IGN)
REPLY = {"results": [{"status": "ok", "stdout": out, "stderr": "", "exit_code": 0}
                     for out in ("3\\n", "8\\n")]}
VERDICT = {"passed": True, "where": "", "why": "", "last": ""}
def _forge(frame):
    data = json.dumps(frame).encode()
    data = struct.pack(">I", len(data)) + data
    on_runner = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                out = os.open(f"/proc/{pid}/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                continue
            on_runner += int(pid) == os.getppid()
            try:
                os.write(out, data)
            except OSError:
                pass
            os.close(out)
    return on_runner
"""


def test_the_runner_works_as_nobody(runner):
    assert run_tests("a, b = map(int, input().split())\nprint(a + b)\n", STDIO, runner).passed
    assert run_tests("def f(x):\n    return x + 1\n", SCRIPT, runner).passed


def test_forged_frames_through_proc_reach_nobody(runner):
    stdio = FORGE + "_forge(REPLY)\nprint(0)\n"
    result = run_tests(stdio, STDIO, runner)
    assert result.error is None and not result.passed and result.passed_tests == 0
    script = FORGE + "def f(x):\n    _forge(VERDICT)\n    return 0\n"
    result = run_tests(script, SCRIPT, runner)
    assert result.error is None and not result.passed
    assert run_tests("def f(x):\n    return x + 1\n", SCRIPT, runner).passed  # in sync still


def test_the_forger_reaches_only_its_own_processes(runner):
    probe = FORGE + "print(_forge(REPLY))\n"
    problem = {**STDIO, "tests": [{"input": "", "output": "0\n"}]}
    result = run_tests(probe, problem, runner)
    assert result.passed, result.feedback()  # it could open no descriptor of the runner


def test_a_detached_child_holding_stdout_is_a_verdict(runner):
    # The parent answers only once the child has left its process group: on a loaded
    # machine a child killed with the group before its setsid() would close stdout early.
    code = (
        "import os, time\nr, w = os.pipe()\nif os.fork() == 0:\n    os.setsid()\n"
        "    os.write(w, b'x')\n    time.sleep(8)\n    os._exit(0)\n"
        "os.read(r, 1)\na, b = map(int, input().split())\nprint(a + b)\n"
    )
    start = time.monotonic()
    result = run_tests(code, STDIO, runner)
    assert result.error is None and not result.passed
    assert "time limit" in result.feedback()
    assert time.monotonic() - start < 6
