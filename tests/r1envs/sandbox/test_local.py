"""LocalSandbox behaviour: isolation, per-test freshness, pooling, recovery, warnings."""

from __future__ import annotations

import os
import tempfile
import threading
import warnings

import pytest

from r1envs.sandbox import SandboxError
from r1envs.sandbox.local import (
    LocalSandbox,
    isolation_available,
    isolation_problem,
    package_dirs,
    system_ro_paths,
)
from tests.r1envs.sandbox.conftest import make_sandbox

PROBE = (
    "import os, sys\n"
    "print(os.getuid(), os.getgid(), len(os.environ), sorted(os.environ))\n"
    "print(os.getcwd(), sorted(os.listdir('.')))\n"
    "open('mark', 'w').write('x')\n"
    "print(os.path.exists('/work'), os.path.exists(os.path.expanduser('~root/.bashrc')))\n"
    "print(len([p for p in os.listdir('/proc') if p.isdigit()]))\n"
)


def _run(sandbox, code, tests=1, **kw):
    request = {
        "code": code,
        "time_limit": 2.0,
        "memory_mb": 128,
        "tests": [{"input": ""}] * tests,
        **kw,
    }
    return sandbox.execute(request)


@pytest.fixture(scope="module", params=["bwrap", "unshare"])
def local_sandbox(request, outer_bound):
    sandbox = make_sandbox(request.param)
    yield sandbox
    sandbox.close()


def test_candidates_run_unprivileged_in_a_fresh_empty_world(local_sandbox):
    first, second = _run(local_sandbox, PROBE, tests=2)
    for out in (first, second):
        assert out["status"] == "ok" and out["exit_code"] == 0, out
        ids, cwd, visible, procs = out["stdout"].splitlines()
        uid, gid = map(int, ids.split()[:2])
        assert uid != 0 and gid != 0 and uid in local_sandbox.uids
        assert ids.split(None, 2)[2] == "4 ['HOME', 'LANG', 'PATH', 'TMPDIR']"
        assert cwd.endswith("[]")  # fresh working directory: the first test's file is gone
        assert visible == "False False"  # no project dir, no host home
        assert int(procs) <= 3  # own pid namespace: runner (+ bwrap init) and the candidate
    assert first["stdout"].splitlines()[1] != second["stdout"].splitlines()[1]


def test_read_only_system_dirs_and_private_tmp(local_sandbox):
    code = (
        "import os\nfor p in ('/usr/x', '/tmp/x', '/x'):\n    try:\n        open(p, 'w').close()\n"
        "        print(p, 'ok')\n    except OSError as e:\n        print(p, 'denied')\n"
    )
    (out,) = _run(local_sandbox, code)
    # as an ordinary user the candidate shares the runner's uid: the slot's private /tmp is
    # writable (and emptied after every test), never the host's
    tmp = "denied" if os.geteuid() == 0 else "ok"
    assert out["stdout"].split() == ["/usr/x", "denied", "/tmp/x", tmp, "/x", "denied"]
    (out,) = _run(
        local_sandbox, "import tempfile\nprint(tempfile.mkstemp()[1].startswith('/tmp/w'))"
    )
    assert out["stdout"] == "True\n"  # TMPDIR is the fresh working directory


def test_slots_run_in_parallel_and_survive_their_starting_threads(local_sandbox):
    results = []

    def work():
        results.append(_run(local_sandbox, "print(6 * 7)", tests=3))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert all(o["stdout"] == "42\n" for r in results for o in r)
    # the threads that started the slots are gone; the slots still work
    assert _run(local_sandbox, "print(1)")[0]["stdout"] == "1\n"


def test_a_dead_runner_is_replaced(local_sandbox):
    _run(local_sandbox, "print(1)")
    for slot in list(local_sandbox._all):
        slot.kill()
    assert _run(local_sandbox, "print(2)")[0]["stdout"] == "2\n"


def test_time_and_output_limits_are_per_test(local_sandbox):
    slow = _run(local_sandbox, "while True: pass", tests=3, time_limit=0.5)
    assert [o["status"] for o in slow] == ["timeout", "skipped", "skipped"]
    flood = _run(local_sandbox, "print('x' * 5000)", output_limit=1000)
    assert flood[0]["status"] == "output_limit"


def test_isolation_none_warns_loudly():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sandbox = LocalSandbox(workers=1, isolation="none")
    try:
        assert any("NO NAMESPACE ISOLATION" in str(w.message) for w in caught)
        assert _run(sandbox, "print(5)")[0]["stdout"] == "5\n"
    finally:
        sandbox.close()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="isolation"):
        LocalSandbox(isolation="vm")
    with pytest.raises(ValueError, match="workers"):
        LocalSandbox(workers=0)


def test_system_paths_include_the_python_runtime():
    paths = system_ro_paths()
    assert "/usr" in paths
    assert not any(p.startswith("/work") for p in paths)


def _without(monkeypatch, *missing):
    from r1envs.sandbox import local

    real_which = local.shutil.which
    monkeypatch.setattr(
        local.shutil, "which", lambda name: None if name in missing else real_which(name)
    )
    monkeypatch.setattr(local, "_probe_cache", {})


def test_auto_falls_back_to_unshare_without_bubblewrap(monkeypatch):
    if not isolation_available("unshare"):
        pytest.skip(f"unshare cannot run here: {isolation_problem('unshare')}")
    _without(monkeypatch, "bwrap")
    sandbox = LocalSandbox(workers=1)
    try:
        assert sandbox.isolation == "unshare"
        assert _run(sandbox, "print(7)")[0]["stdout"] == "7\n"
    finally:
        sandbox.close()


def test_auto_refuses_to_run_unisolated(monkeypatch):
    _without(monkeypatch, "bwrap", "unshare")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no silent (or loud) fall back to no isolation
        with pytest.raises(SandboxError) as caught:
            LocalSandbox(workers=1)
    message = str(caught.value)
    for needle in ("isolation='auto'", "bwrap", "unshare", "apt-get install bubblewrap",
                   "isolation='none'"):  # fmt: skip
        assert needle in message, message
    with pytest.raises(SandboxError, match="isolation='bwrap'.*bubblewrap"):
        LocalSandbox(workers=1, isolation="bwrap")


def test_candidates_see_no_installed_packages(local_sandbox):
    dirs = package_dirs()
    assert dirs, "no site-packages or dist-packages found next to the Python runtime"
    code = f"import os\nprint(sum(len(os.listdir(d)) for d in {dirs!r}))\n"
    (out,) = _run(local_sandbox, code)
    assert out["stdout"] == "0\n", out


@pytest.mark.parametrize("isolation", ["bwrap", "unshare", "none"])
def test_our_own_files_in_tmp_and_dev_shm_survive_a_run(isolation):
    if isolation != "none" and not isolation_available(isolation):
        pytest.skip(f"{isolation} cannot run here: {isolation_problem(isolation)}")
    ours = []
    for folder in ("/tmp", "/dev/shm"):
        if not os.access(folder, os.W_OK):
            continue
        fd, path = tempfile.mkstemp(prefix="r1-ours-", dir=folder)
        os.write(fd, b"mine")
        os.close(fd)
        os.mkdir(path + ".d")
        ours += [path, path + ".d"]
    assert ours, "neither /tmp nor /dev/shm is writable here"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sandbox = LocalSandbox(workers=1, isolation=isolation)
    try:
        code = "open('left-over', 'w').write('x')\nprint(input())\n"
        outs = sandbox.execute(
            {"code": code, "time_limit": 2.0, "memory_mb": 128, "tests": [{"input": "1"}] * 3}
        )
        assert [o["stdout"] for o in outs] == ["1\n"] * 3, outs
        missing = [p for p in ours if not os.path.exists(p)]
        assert not missing, f"the sandbox removed files it does not own: {missing}"
        assert open(ours[0], "rb").read() == b"mine"
    finally:
        sandbox.close()
        for path in ours:
            if os.path.isdir(path):
                os.rmdir(path)
            elif os.path.exists(path):
                os.unlink(path)
