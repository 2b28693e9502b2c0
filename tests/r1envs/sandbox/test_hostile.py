"""Hostile candidate programs, run against every sandbox: all score 0 or are contained, the
judge survives, the host is untouched, and each case ends within 4 s without the outer
cgroup (see conftest) ever being what stopped it."""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from pathlib import Path

import pytest

from r1envs.sandbox.local import LocalSandbox
from r1envs.verifiers.code import run_tests
from tests.r1envs.sandbox.conftest import sandbox_processes

PROJECT = Path(__file__).resolve().parents[3]
# a case normally ends in well under 2 s (per-test limits of 1-1.5 s); the bound leaves room
# for a loaded shared CI machine while still catching a hang
CASE_SECONDS = 6.0

SQUARE = {
    "question": "Return x*x + 1.",
    "test_style": "assert",
    "entry_point": "f",
    "tests": ["assert f(2) == 5", "assert f(-3) == 10", "assert f(10) == 101", "assert f(0) == 1"],
    "time_limit_s": 1.0,
    "memory_limit_mb": 128,
}
SQUARE_OK = "def f(x):\n    return x * x + 1\n"
SUM = {
    "question": "Print a+b. Sample: input '1 2' gives '3'.",
    "test_style": "stdio",
    "tests": [
        {"input": "1 2\n", "output": "3\n"},
        {"input": "40 2\n", "output": "42\n"},
        {"input": "-7 7\n", "output": "0\n"},
    ],
    "time_limit_s": 1.0,
    "memory_limit_mb": 128,
}
SUM_OK = "a, b = map(int, input().split())\nprint(a + b)\n"

ASSERT_HACKS = {
    "sys_exit": "import sys\nsys.exit(0)\n",
    "os_exit": "import os\nos._exit(0)\n",
    "exit_builtin": "exit()\n",
    "raise_systemexit": "raise SystemExit(0)\n",
    "exit_in_function": "import sys\ndef f(x):\n    sys.exit(0)\n",
    "os_exit_in_function": "import os\ndef f(x):\n    os._exit(0)\n",
    "atexit_status_0": "import atexit, os\natexit.register(lambda: os._exit(0))\n"
    "def f(x):\n    raise ValueError\n",
    "signal_handlers": "import signal, os\nfor s in (signal.SIGTERM, signal.SIGXCPU, signal.SIGINT):\n"
    "    signal.signal(s, lambda *a: os._exit(0))\ndef f(x):\n    while True:\n        pass\n",
    "excepthook": "import sys\nsys.excepthook = lambda *a: None\ndef f(x):\n    raise RuntimeError\n",
    "always_equal": "class A:\n    def __eq__(self, o): return True\n    def __ne__(self, o): return False\n"
    "    __hash__ = object.__hash__\ndef f(x):\n    return A()\n",
    "int_subclass": "class I(int):\n    def __eq__(self, o): return True\n    __hash__ = int.__hash__\n"
    "def f(x):\n    return I(0)\n",
    "str_subclass": "class S(str):\n    def __eq__(self, o): return True\n    __hash__ = str.__hash__\n"
    "def f(x):\n    return S('x')\n",
    "float_subclass": "class F(float):\n    def __eq__(self, o): return True\n    def __sub__(self, o): return 0.0\n"
    "    __hash__ = float.__hash__\ndef f(x):\n    return F(1)\n",
    "bool_for_int": "def f(x):\n    return True\n",
    "monkeypatch_builtins": "import builtins\nbuiltins.abs = lambda x: 0\nbuiltins.isinstance = lambda *a: True\n"
    "builtins.len = lambda x: 0\nimport json\njson.dumps = lambda *a, **k: '{\"ok\": 5}'\n"
    "json.loads = lambda *a, **k: {'ok': 5}\ndef f(x):\n    return None\n",
    "forge_result_frames": "import os, json, struct\nfor v in (True, 'passed', 1):\n"
    "    d = json.dumps({'ok': v, 'passed': True}).encode()\n    os.write(3, struct.pack('>I', len(d)) + d)\n"
    "os._exit(0)\n",
    "deeply_nested_value": "def f(x):\n    a = []\n    for _ in range(100000):\n        a = [a]\n    return a\n",
    "deeply_nested_forged_frame": "import os, struct\nd = b'[' * 200000 + b']' * 200000\n"
    "for _ in range(4):\n    os.write(3, struct.pack('>I', len(d)) + d)\nos._exit(0)\n",
    "inspect_expected": "import inspect, gc\ndef f(x):\n    seen = []\n    for fr in inspect.stack():\n"
    "        seen += [c for c in fr.frame.f_code.co_consts if type(c) is int and c != x]\n"
    "        seen += [v for v in fr.frame.f_locals.values() if type(v) is int and v != x]\n"
    "    for o in gc.get_objects():\n        if type(o) is str and 'assert' in o:\n"
    "            return int(o.split('==')[-1])\n    return seen[-1] if seen else -1\n",
    "kill_parent": "import os, signal\nfor pid in (os.getppid(), 1, -1, 0):\n    try:\n"
    "        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\ndef f(x):\n    return 0\n",
}

STDIO_HACKS = {
    "sys_exit_stdio": "import sys\nsys.exit(0)\n",
    "print_every_answer": "for i in range(-100, 200):\n    print(i)\n",
    "hard_coded_sample": "print(3)\n",
    "answer_after_exit": "import os, time, sys\nif os.fork() == 0:\n    time.sleep(0.3)\n    print(42)\n"
    "    sys.stdout.flush()\n    os._exit(0)\n",
    "crash_after_right_output": SUM_OK + "raise SystemExit(3)\n",
}

RESOURCE_BOMBS = {
    "infinite_loop": "def f(x):\n    while True:\n        pass\n",
    "sleep_forever": "import time\ndef f(x):\n    time.sleep(100)\n",
    "fork_bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
    "thread_bomb": "import threading, time\nwhile True:\n    try:\n"
    "        threading.Thread(target=time.sleep, args=(100,), daemon=True).start()\n"
    "    except Exception:\n        pass\n",
    "memory_bomb": "x = bytearray(1 << 34)\n",
    "memory_growth": "a = []\nwhile True:\n    a.append(bytearray(1 << 24))\n",
    "fork_memory_bomb": "import os, time\nfor _ in range(30):\n    try:\n        if os.fork() == 0:\n"
    "            try:\n                b = b'x' * (100 << 20)\n            except MemoryError:\n"
    "                pass\n            time.sleep(100)\n    except OSError:\n        pass\n"
    "time.sleep(100)\n",
    "stdout_flood": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
    "stderr_flood": "import sys\nwhile True:\n    sys.stderr.write('x' * 65536)\n",
    "disk_flood": "import os\ni = 0\nwhile True:\n    i += 1\n    try:\n"
    "        with open(f'junk{i}', 'wb') as fh:\n            fh.write(b'x' * (8 << 20))\n"
    "    except OSError:\n        break\ndef f(x):\n    return x * x + 1\nwhile True:\n    pass\n",
    "detached_setsid": "import subprocess\nsubprocess.Popen(['sleep', '30'], start_new_session=True)\n"
    "def f(x):\n    return 0\n",
    "double_fork": "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
    "        time.sleep(30)\n    os._exit(0)\ndef f(x):\n    return 0\n",
    "nohup": "import os\nos.system('nohup sleep 30 >/dev/null 2>&1 &')\ndef f(x):\n    return 0\n",
}


def _judge(sandbox, code, problem, outer_bound):
    start = time.monotonic()
    result = run_tests(code, problem, sandbox)
    elapsed = time.monotonic() - start
    assert result.error is None, result.error
    assert elapsed < CASE_SECONDS, f"case took {elapsed:.1f}s"
    if outer_bound is not None:
        assert not any(outer_bound.hit_limits().values()), outer_bound.hit_limits()
    if isinstance(sandbox, LocalSandbox):
        left = sandbox_processes(sandbox)
        assert not left, f"candidate processes survived: {left}"
    return result


@pytest.mark.parametrize("name", sorted(ASSERT_HACKS))
def test_assert_reward_hacks_score_zero(any_sandbox, outer_bound, name):
    result = _judge(any_sandbox, ASSERT_HACKS[name], SQUARE, outer_bound)
    assert not result.passed and result.passed_tests == 0, result.feedback()


@pytest.mark.parametrize("name", sorted(STDIO_HACKS))
def test_stdio_reward_hacks_fail(any_sandbox, outer_bound, name):
    result = _judge(any_sandbox, STDIO_HACKS[name], SUM, outer_bound)
    assert not result.passed, result.feedback()


@pytest.mark.parametrize("name", sorted(RESOURCE_BOMBS))
def test_resource_bombs_are_contained(any_sandbox, outer_bound, name):
    result = _judge(any_sandbox, RESOURCE_BOMBS[name], SQUARE, outer_bound)
    assert not result.passed, result.feedback()
    # the judge (and the slots) survive: a correct program still passes afterwards
    assert _judge(any_sandbox, SQUARE_OK, SQUARE, outer_bound).passed


def test_judge_survives_parent_killing(any_sandbox, outer_bound):
    _judge(any_sandbox, ASSERT_HACKS["kill_parent"], SQUARE, outer_bound)
    assert _judge(any_sandbox, SUM_OK, SUM, outer_bound).passed


@pytest.fixture
def planted(tmp_path):
    """Secrets and expected outputs planted on the host: env var, project dir, $HOME, /tmp."""
    token = secrets.token_hex(8)
    folders = [PROJECT, Path.home(), Path("/tmp")]  # the project where we may write to it
    files = [
        folder / f"{'' if folder.name == 'tmp' else '.'}r1-test-plant-{token}.jsonl"
        for folder in folders
        if os.access(folder, os.W_OK)
    ]
    line = json.dumps({"input": f"in-{token}", "output": f"out-{token}"}) + "\n"
    for f in files:
        f.write_text(line)
        os.chmod(f, 0o644)
    os.environ["R1_TEST_SECRET"] = f"out-{token}"
    yield token, files
    os.environ.pop("R1_TEST_SECRET", None)
    for f in files:
        f.unlink(missing_ok=True)


def _secret_problem(token):
    return {
        "question": "Print the secret.",
        "test_style": "stdio",
        "tests": [{"input": f"in-{token}\n", "output": f"out-{token}\n"}],
        "time_limit_s": 1.5,
        "memory_limit_mb": 128,
    }


def test_secrets_in_env_and_files_are_not_visible(any_sandbox, outer_bound, planted):
    token, files = planted
    code = (
        "import os, glob\nfound = os.environ.get('R1_TEST_SECRET')\n"
        "for p in %r + glob.glob('/proc/*/environ'):\n    try:\n"
        "        data = open(p, 'rb').read().decode('utf-8', 'replace')\n    except OSError:\n"
        "        continue\n    if 'out-' in data:\n        found = 'out-' + data.split('out-')[1][:16]\n"
        "print(found)\n" % [str(f) for f in files]
    )
    result = _judge(any_sandbox, code, _secret_problem(token), outer_bound)
    assert not result.passed, result.feedback()


def test_searching_the_file_system_for_expected_outputs_fails(any_sandbox, outer_bound, planted):
    token, _ = planted
    code = (
        "import os, sys, json\nneedle = sys.stdin.read().strip()\n"
        "for root, dirs, files in os.walk('/'):\n"
        "    if root.startswith(('/proc', '/sys', '/dev')):\n        dirs[:] = []\n        continue\n"
        "    for name in files:\n        if not name.endswith('.jsonl'):\n            continue\n"
        "        try:\n            for line in open(os.path.join(root, name)):\n"
        "                if needle in line:\n                    print(json.loads(line)['output'])\n"
        "                    sys.exit(0)\n        except Exception:\n            pass\n"
    )
    result = _judge(any_sandbox, code, _secret_problem(token), outer_bound)
    assert not result.passed, result.feedback()


def test_writing_and_deleting_outside_the_sandbox_does_nothing(any_sandbox, outer_bound, planted):
    token, files = planted
    targets = [
        PROJECT / f"PWNED-{token}",
        Path.home() / f"PWNED-{token}",
        Path(f"/tmp/PWNED-{token}"),
    ]
    code = (
        "import os, shutil\nfor p in %r:\n    try:\n        open(p, 'w').write('x')\n"  # noqa: UP031
        "    except OSError:\n        pass\nfor p in %r:\n    try:\n        os.remove(p)\n"
        "    except OSError:\n        pass\nfor d in ('/usr/lib', '/work', '/root'):\n"
        "    shutil.rmtree(d + '/r1-nonexistent', ignore_errors=True)\n"
        "def f(x):\n    return 0\n" % ([str(t) for t in targets], [str(f) for f in files])
    )
    result = _judge(any_sandbox, code, SQUARE, outer_bound)
    assert not result.passed
    assert all(f.exists() for f in files), "a planted file was deleted"
    assert not any(t.exists() for t in targets), "the candidate wrote outside the sandbox"


def test_network_is_unreachable(any_sandbox, outer_bound):
    server = socket.socket()
    server.bind(("0.0.0.0", 0))
    server.listen(5)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    hits = []

    def accept():
        end = time.monotonic() + 2
        while time.monotonic() < end:
            try:
                hits.append(server.accept())
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    code = (
        "import socket\nok = False\nfor host in ('127.0.0.1', %r, '1.1.1.1'):\n    try:\n"  # noqa: UP031
        "        socket.create_connection((host, %d), timeout=0.5).close()\n        ok = True\n"
        "    except OSError:\n        pass\nprint('connected' if ok else 'no')\n"
        % (socket.gethostbyname(socket.gethostname()), port)
    )
    problem = {**SUM, "tests": [{"input": "", "output": "connected\n"}], "time_limit_s": 1.5}
    result = _judge(any_sandbox, code, problem, outer_bound)
    thread.join()
    server.close()
    assert not result.passed, result.feedback()
    assert not hits, "the candidate reached a host socket"


def test_nothing_survives_from_one_candidate_to_the_next(any_sandbox, outer_bound):
    plant = (
        "import os, tempfile\nfor d in ('/tmp', '/dev/shm', '/var/tmp', tempfile.gettempdir()):\n"
        "    try:\n        open(os.path.join(d, 'r1-left-over'), 'w').write('42')\n    except OSError:\n"
        "        pass\ndef f(x):\n    return 0\n"
    )
    _judge(any_sandbox, plant, SQUARE, outer_bound)
    look = (
        "import os, glob\ndef f(x):\n    found = glob.glob('/tmp/**/r1-left-over', recursive=True)\n"
        "    found += glob.glob('/dev/shm/r1-left-over') + glob.glob('/var/tmp/r1-left-over')\n"
        "    return x * x + 1 if found else -1\n"
    )
    result = _judge(any_sandbox, look, SQUARE, outer_bound)
    assert result.passed_tests == 0, result.feedback()


def test_truthiness_tricks_fail(any_sandbox, outer_bound):
    problem = {
        "question": "Is x odd?",
        "test_style": "assert",
        "entry_point": "odd",
        "tests": ["assert not odd(4)", "assert odd(3)", "assert odd(5) is True"],
        "time_limit_s": 1.0,
    }
    tricks = [
        "class T:\n    def __bool__(self): return True\ndef odd(x):\n    return T()\n",
        "class F:\n    def __bool__(self): return False\ndef odd(x):\n    return F()\n",
        "def odd(x):\n    return object()\n",
        "import itertools\n_c = itertools.count()\n"
        "class Flip:\n    def __bool__(self): return next(_c) % 2 == 1\ndef odd(x):\n    return Flip()\n",
    ]
    for code in tricks:
        result = _judge(any_sandbox, code, problem, outer_bound)
        assert result.passed_tests == 0, (code, result.feedback())
    assert _judge(any_sandbox, "def odd(x):\n    return x % 2 == 1\n", problem, outer_bound).passed


def test_the_runner_cannot_be_inspected_or_tampered_with(any_sandbox, outer_bound):
    # as an ordinary user the candidate shares its runner's uid: the runner is still out of
    # its reach (not dumpable: no ptrace, no /proc/<pid>/mem)
    code = (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\ndone = []\n"
        "for pid in [p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()]:\n"
        "    for path in ('mem', 'environ'):\n        try:\n"
        "            open(f'/proc/{pid}/{path}', 'r+b' if path == 'mem' else 'rb').close()\n"
        "            done.append(path)\n        except OSError:\n            pass\n"
        "    if libc.ptrace(16, int(pid), 0, 0) == 0:\n        done.append('ptrace')\n"
        "print('tampered' if done else 'no')\n"
    )
    problem = {**SUM, "tests": [{"input": "", "output": "tampered\n"}], "time_limit_s": 1.5}
    result = _judge(any_sandbox, code, problem, outer_bound)
    assert not result.passed, result.feedback()
    assert _judge(any_sandbox, SUM_OK, SUM, outer_bound).passed


def test_breaking_out_of_the_root_fails(any_sandbox, outer_bound, planted):
    # a fresh user namespace would grant chroot() again: then the classic chroot escape
    token, files = planted
    code = (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "for flags in (0x10000000 | 0x00020000, 0x10000000):\n"
        "    if libc.unshare(flags) == 0:\n        break\n"
        "try:\n    os.makedirs('esc', exist_ok=True)\n    os.chroot('esc')\n"
        "    for _ in range(64):\n        os.chdir('..')\n    os.chroot('.')\nexcept OSError:\n"
        "    pass\nprint('escaped' if any(os.path.exists(p) for p in %r) else 'no')\n"  # noqa: UP031
        % [str(f) for f in files]
    )
    problem = {**SUM, "tests": [{"input": "", "output": "escaped\n"}], "time_limit_s": 1.5}
    result = _judge(any_sandbox, code, problem, outer_bound)
    assert not result.passed, result.feedback()
