"""The in-sandbox test runner (a "zygote"): stdlib only, run as ``python -I -S -c <this file>``.

It is started once per sandbox slot, inside the slot's isolation (namespaces + chroot, a
bubblewrap sandbox, or a container), imports a few common modules once, and then serves
requests: length-prefixed JSON frames on fds 0 (in) and 1 (out). A request carries one
candidate program and the tests of one problem; every test runs in a *fresh forked child*
that drops to the slot's unprivileged uid, applies rlimits, gets a fresh working directory,
an empty environment, its own session and no inherited descriptors but its stdio and a
result pipe, and runs the program. After every test every other process is killed (as init
of its own pid namespace with ``kill(-1)``, else from the candidate's uid with ``kill(-1)``;
detached, double-forked or ``setsid`` processes included) and the working directory is
removed. Before accepting work the runner runs a self-test program the same way, so a runner
that cannot drop privileges reports an infrastructure error instead of judging.

What comes back is *data*, never the program's word: for ``assert`` tests the values of the
call expressions the judge asked for (serialized to plain JSON with exact types, passed on
unparsed), for ``stdio`` tests the captured output, for ``script`` tests the verdict of a
judge process that ran the test script against the program (see ``run_judge``). The candidate runs in the same process as the serializer and may
tamper with it; that only lets it choose which plain value it reports, which it could do by
returning that value. The expected values never enter the sandbox, so nothing in here can
reveal them, and the comparison happens in the judge's process.

The configuration (argv[1], JSON): ``uid``/``gid`` for candidates, ``nproc``, ``fsize``,
``nofile``, ``build_root`` (set up a private root with mounts and ``chroot`` into it; needs
root inside fresh mount/pid namespaces), ``ro_paths`` (host paths exposed read-only in that
root), ``tmp_mb`` (size of the private ``/tmp``), ``sweep`` (the candidate uid is ours alone:
clean up by uid), ``pid_ns`` (we are init of a pid namespace of our own).

One file on purpose: it is sent as ``python -c`` source into namespaces and containers.
"""

import builtins
import errno
import json
import os
import re
import resource
import select
import shutil
import signal
import struct
import sys
import time

CFG = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
UID = int(CFG.get("uid", 65534))
GID = int(CFG.get("gid", 65534))
ROOT = os.getuid() == 0
PRELOAD = (
    "array bisect collections copy dataclasses decimal fractions functools heapq itertools "
    "math operator random re string typing io traceback"
)
RESULT_FD = 3
STDERR_KEEP = 4096
RES_CAP = 1 << 20  # result frames of one assert test
RESULTS_BUDGET = 8 << 20  # encoded results of one request, all tests together


# -- framing ----------------------------------------------------------------------------


def read_exact(fd, n):
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_frame(fd):
    head = read_exact(fd, 4)
    if head is None:
        return None
    body = read_exact(fd, struct.unpack(">I", head)[0])
    return None if body is None else json.loads(body.decode("utf-8"))


def write_frame(fd, obj):
    data = json.dumps(obj).encode("utf-8")
    data = struct.pack(">I", len(data)) + data
    while data:
        data = data[os.write(fd, data) :]


# -- private root (the "unshare" backend) -----------------------------------------------

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18


def _mount(libc, src, dst, fstype, flags, data):
    enc = [None if x is None else x.encode() for x in (src, dst, fstype, data)]
    if libc.mount(enc[0], enc[1], enc[2], flags, enc[3]) != 0:
        err = __import__("ctypes").get_errno()
        raise OSError(err, f"mount {src} -> {dst}: {os.strerror(err)}")


def build_root():
    """Mount a tmpfs root holding read-only system dirs, /dev nodes, /proc, /tmp; chroot."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE, None)
    new = "/mnt" if os.path.isdir("/mnt") else "/tmp"
    _mount(libc, "tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=755")
    for path in CFG.get("ro_paths", []):
        target = new + path
        if os.path.islink(path):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if not os.path.lexists(target):
                os.symlink(os.readlink(path), target)
        elif os.path.isdir(path):
            os.makedirs(target, exist_ok=True)
            _mount(libc, path, target, None, MS_BIND | MS_REC, None)
            flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV
            _mount(libc, None, target, None, flags, None)
    os.makedirs(new + "/dev", exist_ok=True)
    for name in ("null", "zero", "random", "urandom", "full"):
        open(f"{new}/dev/{name}", "w").close()
        _mount(libc, f"/dev/{name}", f"{new}/dev/{name}", None, MS_BIND, None)
    os.symlink("/proc/self/fd", new + "/dev/fd")
    for name in ("proc", "tmp", "etc"):
        os.makedirs(f"{new}/{name}", exist_ok=True)
    _mount(libc, "proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    tmp_opts = f"size={int(CFG.get('tmp_mb', 64))}m,mode=755"
    _mount(libc, "tmpfs", new + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, tmp_opts)
    with open(new + "/etc/passwd", "w") as fh:
        fh.write(f"root:x:0:0::/:/bin/false\nsandbox:x:{UID}:{GID}::/tmp:/bin/false\n")
    os.chroot(new)
    os.chdir("/")


# -- serialization of values (exact plain types only) -----------------------------------


def encode(value, depth=0, handles=None):
    """Plain JSON for a value of an exact builtin type; anything else becomes opaque (or,
    given a ``handles`` list, a reference to the object kept there)."""
    t = type(value)
    if depth > 200:
        raise ValueError("value nested too deeply")
    if value is None or t is bool or t is int or t is str:
        return value
    if t is float:
        return {"__t": "float", "v": repr(value)}
    if t is list:
        return [encode(v, depth + 1, handles) for v in value]
    if t is tuple or t is set or t is frozenset:
        items = [encode(v, depth + 1, handles) for v in value]
        return {"__t": t.__name__, "v": items}
    if t is dict:
        pairs = [
            [encode(k, depth + 1, handles), encode(v, depth + 1, handles)] for k, v in value.items()
        ]
        return {"__t": "dict", "v": pairs}
    if t is bytes:
        return {"__t": "bytes", "v": value.hex()}
    if handles is not None:  # a call server: the judge gets a handle to the object
        handles.append(value)
        return {"__t": "ref", "id": len(handles) - 1, "type": str(t.__name__)[:60]}
    return {"__t": "opaque", "type": t.__name__[:60]}


# -- the test child ---------------------------------------------------------------------


def _limits(req):
    mem = int(req["memory_mb"]) << 20
    cpu = max(1, int(req["time_limit"] + 0.999))
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(CFG.get("fsize", 1 << 24)),) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (int(CFG.get("nofile", 64)),) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (int(CFG.get("nproc", 32)),) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


_LIBC = []  # the C library, loaded once by the runner (children inherit it)


def _libc():
    if not _LIBC:
        import ctypes

        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


PR_SET_DUMPABLE = 4


def _drop_privileges(dumpable=True):
    """Unprivileged from here on. ``dumpable=False`` (the runner's own state, kept by the
    judge process): a process of the same uid can neither trace it nor open its
    ``/proc/PID/fd`` entries to write forged frames into its pipes."""
    libc = _libc()
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the runner
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: setuid binaries grant nothing
    libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # own /proc entries writable for the next step
    try:  # the OOM killer picks candidates first (raising the score needs no privilege)
        with open("/proc/self/oom_score_adj", "w") as fh:
            fh.write("1000")
    except OSError:
        pass
    if ROOT:
        os.setgroups([])
        os.setresgid(GID, GID, GID)
        os.setresuid(UID, UID, UID)
    libc.prctl(PR_SET_DUMPABLE, 1 if dumpable else 0, 0, 0, 0)


def child_main(req, test, workdir, fds):
    """Runs in the forked child; never returns."""
    try:
        in_fd, out_w, err_w, res_w = fds
        os.setsid()
        os.dup2(in_fd, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.dup2(res_w, RESULT_FD)
        os.closerange(RESULT_FD + 1, 1 << 16)
        _limits(req)
        _drop_privileges()
        os.chdir(workdir)
        os.environ.clear()
        os.environ.update(
            {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
        )
        os.umask(0o077)
        sys.stdin = open(0, encoding="utf-8", errors="replace", closefd=False)
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)
        sys.argv = ["solution.py"]
        exprs = test.get("exprs")
        module = exprs is not None or "script" in test
        namespace = {
            "__name__": "solution" if module else "__main__",
            "__builtins__": __builtins__,
        }
        code = compile(req["code"], "solution.py", "exec")
        prelude = compile(str(test.get("prelude") or ""), "setup.py", "exec")
    except BaseException as err:  # noqa: BLE001 - setup failed before any candidate code ran
        os.write(2, f"sandbox setup failed: {err!r}".encode())
        os._exit(70)
    dumps, write, _exit = json.dumps, os.write, os._exit

    def exit_(code):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001
                pass
        _exit(code)

    try:
        exec(prelude, namespace)  # problem code the tests build inputs with (MBPP's setup)
        exec(code, namespace)
        sys.stdout.flush()
    except SystemExit as err:
        code_ = err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
        try:
            sys.stdout.flush()
        except BaseException:  # noqa: BLE001
            pass
        if not module:
            exit_(code_ & 0xFF)
        write(2, b"SystemExit raised while loading the solution")
        exit_(1)
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        exit_(1)
    if "script" in test:
        serve_calls(namespace, exit_)
    if exprs is None:
        exit_(0)
    for src in exprs:
        try:
            value = eval(compile(src, "<test>", "eval"), namespace)
            frame = {"ok": encode(value)}
        except BaseException as err:  # noqa: BLE001
            frame = {"raised": f"{type(err).__name__}: {err}"[:300]}
        data = dumps(frame).encode()
        write(RESULT_FD, struct.pack(">I", len(data)) + data)
    exit_(0)


# -- script tests: the program's call server and the judge process ----------------------
#
# A ``script`` test runs in two processes. The program under test loads as a module and then
# serves calls on a socket (``serve_calls``); the *judge*, a sibling process with the same
# limits, runs the test script in a namespace where every name of the program is a proxy
# (``Remote``) that calls into the program. Only plain data crosses (numbers, strings, bytes,
# containers of them); any other object stays in the program and the judge sees a handle
# that equals nothing. The judge writes the verdict to a pipe of its own; it is not dumpable,
# so a program running under the same uid cannot reach that pipe through ``/proc``.

CALL_FD = 3  # the program's end of the call socket
JUDGE_FD = 4  # the judge's end of it (the verdict pipe is the judge's RESULT_FD)
STDLIB = frozenset(getattr(sys, "stdlib_module_names", ()))
REPLY_CAP = 4 << 20  # largest reply (one returned value) the judge reads
VERDICT_CAP = 1 << 16


def _describe(namespace):
    """What the judge needs to know of the program's names: modules, plain constants,
    everything else (functions, classes, objects) as proxies."""
    names = {}
    for name, value in list(namespace.items()):
        if type(name) is not str or name.startswith("__"):
            continue
        if type(value) is type(sys):
            names[name] = {"module": str(getattr(value, "__name__", ""))[:200]}
            continue
        names[name] = {}
        if value is None or type(value) in (bool, int, float, str, bytes, list, tuple, dict):
            try:
                probe = []
                data = encode(value, 0, probe)
                if not probe and len(json.dumps(data)) < 65536:
                    names[name] = {"value": data}
            except Exception:  # noqa: BLE001 - a proxy then
                pass
    return names


def _resolve(target, namespace, handles):
    if "ref" in target:
        obj = handles[int(target["ref"])]
    else:
        name = str(target.get("name"))
        if name not in namespace:
            raise NameError(f"name {name!r} is not defined by the program")
        obj = namespace[name]
    for attr in target.get("path", ()):
        obj = getattr(obj, str(attr))
    return obj


def _unwrap(data, namespace, handles, depth=0):
    """An argument from the judge: plain values, or references to the program's objects."""
    if depth > 200:
        raise ValueError("argument nested too deeply")
    if type(data) is list:
        return [_unwrap(x, namespace, handles, depth + 1) for x in data]
    if type(data) is not dict:
        return data
    tag, v = data.get("__t"), data.get("v")
    if tag == "target":
        return _resolve(data["target"], namespace, handles)
    if tag == "float":
        return float(v)
    if tag == "bytes":
        return bytes.fromhex(v)
    if tag == "dict":
        return {
            _unwrap(k, namespace, handles, depth + 1): _unwrap(x, namespace, handles, depth + 1)
            for k, x in v
        }
    items = [_unwrap(x, namespace, handles, depth + 1) for x in v]
    return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)


_PROTOCOL = {
    "len": len,
    "list": list,
    "getitem": lambda obj, key: obj[key],
    "contains": lambda obj, item: item in obj,
}


def serve_calls(namespace, exit_):
    """In the program's process, after it loaded: answer the judge's calls until it hangs up."""
    handles = []
    write_frame(CALL_FD, {"names": _describe(namespace)})
    while True:
        try:
            req = read_frame(CALL_FD)
        except Exception:  # noqa: BLE001
            req = None
        if req is None:
            exit_(0)
        try:
            obj = _resolve(req["target"], namespace, handles)
            args = [_unwrap(a, namespace, handles) for a in req.get("args", ())]
            if req.get("op") == "call":
                kwargs = {str(k): _unwrap(a, namespace, handles) for k, a in req.get("kwargs", ())}
                obj = obj(*args, **kwargs)
            elif req.get("op") == "protocol":  # len(obj), list(obj), obj[k], k in obj
                obj = _PROTOCOL[str(req.get("fn"))](obj, *args)
            reply = {"ok": encode(obj, 0, handles)}
            data = json.dumps(reply)
        except Exception as err:  # noqa: BLE001 - the judge re-raises it
            try:
                text = str(err)[:300]
            except Exception:  # noqa: BLE001
                text = "?"
            data = json.dumps({"raised": type(err).__name__[:60], "msg": text})
        except BaseException as err:  # noqa: BLE001 - SystemExit and the like end the program
            write_frame(CALL_FD, {"exit": type(err).__name__[:60]})
            exit_(1)
        data = data.encode("utf-8", "replace")
        os.write(CALL_FD, struct.pack(">I", len(data)))
        while data:
            data = data[os.write(CALL_FD, data) :]


class CandidateGone(BaseException):
    """The program exited, or broke the call protocol: no ``except Exception`` catches it."""


class CandidateError(Exception):
    """An exception raised by the program whose type is not a builtin one."""


def _short(value, limit=200):
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001
        text = "?"
    return text if len(text) <= limit else text[:limit] + "..."


class _Conn:
    """The judge's end of the call socket."""

    def __init__(self, fd):
        self.fd, self.gone, self.calls, self.last = fd, None, 0, ""

    def _die(self, why):
        self.gone = self.gone or why
        raise CandidateGone(self.gone)

    def receive(self):
        if self.gone:
            raise CandidateGone(self.gone)
        try:
            head = read_exact(self.fd, 4)
            if head is None:
                self._die("the program exited")
            (n,) = struct.unpack(">I", head)
            if n > REPLY_CAP:
                self._die(f"the program returned a value over {REPLY_CAP >> 20} MiB")
            body = read_exact(self.fd, n)
            if body is None:
                self._die("the program exited")
            reply = json.loads(body.decode("utf-8"))
        except (OSError, ValueError, RecursionError, MemoryError) as err:
            self._die(f"the program broke the call protocol ({type(err).__name__})")
        if type(reply) is not dict:
            self._die("the program broke the call protocol")
        return reply

    def ask(self, op, target, args=(), kwargs=None, label="", fn=None):
        if self.gone:
            raise CandidateGone(self.gone)
        msg = {"op": op, "target": target, "args": [_pack(a) for a in args], "fn": fn}
        msg["kwargs"] = [[k, _pack(v)] for k, v in (kwargs or {}).items()]
        try:
            write_frame(self.fd, msg)
        except OSError:
            self._die("the program exited")
        reply = self.receive()
        if "exit" in reply:
            self._die(f"the program raised {str(reply['exit'])[:60]}")
        self.calls += 1  # the program answered (a value or an exception)
        if "raised" in reply:
            name, text = str(reply["raised"])[:60], str(reply.get("msg", ""))[:300]
            self.last = f"{label} raised {name}: {text}"
            kind = getattr(builtins, name, None)
            if isinstance(kind, type) and issubclass(kind, Exception):
                raise kind(text)
            raise CandidateError(f"{name}: {text}")
        if "ok" not in reply:
            self._die("the program broke the call protocol")
        try:
            value = _unpack(reply["ok"], self)
        except (ValueError, TypeError, KeyError, RecursionError) as err:
            self._die(f"the program sent a malformed value ({type(err).__name__})")
        self.last = f"{label} returned {_short(value)}"
        return value


def _pack(value, depth=0):
    """A judge value as call data: plain values, or references to the program's objects."""
    t = type(value)
    if depth > 200:
        raise ValueError("argument nested too deeply")
    if t is Remote:
        return {"__t": "target", "target": object.__getattribute__(value, "_target")}
    if value is None or t is bool or t is int or t is str:
        return value
    if t is float:
        return {"__t": "float", "v": repr(value)}
    if t is list:
        return [_pack(v, depth + 1) for v in value]
    if t is tuple or t is set or t is frozenset:
        return {"__t": t.__name__, "v": [_pack(v, depth + 1) for v in value]}
    if t is dict:
        return {
            "__t": "dict",
            "v": [[_pack(k, depth + 1), _pack(v, depth + 1)] for k, v in value.items()],
        }
    if t is bytes:
        return {"__t": "bytes", "v": value.hex()}
    raise TypeError(f"a {t.__name__} cannot be passed to the program (plain data only)")


def _unpack(data, conn, depth=0):
    """A value from the program: exact plain types, or a handle (``Remote``) for objects."""
    if depth > 200:
        raise ValueError("value nested too deeply")
    t = type(data)
    if data is None or t is bool or t is int or t is str:
        return data
    if t is list:
        return [_unpack(x, conn, depth + 1) for x in data]
    if t is not dict:
        raise TypeError(t.__name__)
    tag, v = data.get("__t"), data.get("v")
    if tag == "float":
        return float(v)
    if tag == "bytes":
        return bytes.fromhex(v)
    if tag == "ref":
        kind = str(data.get("type", "object"))[:60]
        return Remote(conn, {"ref": int(data["id"]), "type": kind}, kind)
    if tag == "dict":
        return {_unpack(k, conn, depth + 1): _unpack(x, conn, depth + 1) for k, x in v}
    items = [_unpack(x, conn, depth + 1) for x in v]
    return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)


class Remote:
    """A name, attribute or object of the program, seen from the judge.

    Calling it calls into the program; attributes are further remote paths. Used as a value
    (compared, tested for truth, iterated...) a name or attribute is fetched: plain data is
    used as it is; an object of any other type is a *token* that equals nothing, has no
    truth value and no order.
    """

    __slots__ = ("_conn", "_target", "_type")

    def __init__(self, conn, target, type_name=None):
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_type", type_name)

    def _label(self):
        target = object.__getattribute__(self, "_target")
        base = target.get("name") or f"<{target.get('type') or 'object'}>"
        return ".".join([str(base), *map(str, target.get("path", ()))])

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        target = object.__getattribute__(self, "_target")
        path = [*target.get("path", ()), name]
        return Remote(object.__getattribute__(self, "_conn"), {**target, "path": path})

    def __setattr__(self, name, value):
        raise TypeError("the program's objects cannot be changed by the test")

    def __call__(self, *args, **kwargs):
        conn = object.__getattribute__(self, "_conn")
        shown = ", ".join(
            [_short(a, 80) for a in args] + [f"{k}={_short(v, 80)}" for k, v in kwargs.items()]
        )
        label = f"{self._label()}({shown})"
        return conn.ask("call", object.__getattribute__(self, "_target"), args, kwargs, label)

    def _value(self):
        if object.__getattribute__(self, "_type") is not None:
            return self
        conn = object.__getattribute__(self, "_conn")
        return conn.ask("get", object.__getattribute__(self, "_target"), label=self._label())

    def __repr__(self):
        kind = object.__getattribute__(self, "_type")
        return f"<{kind} object of the program>" if kind else f"<program name {self._label()}>"

    def __hash__(self):
        return id(self)


def _value_ops():
    import operator as o

    ops = {name: getattr(o, name.strip("_")) for name in (
        "__eq__ __ne__ __lt__ __le__ __gt__ __ge__ __add__ __sub__ __mul__ __truediv__ "
        "__floordiv__ __mod__ __pow__ __neg__ __abs__ __getitem__ __contains__ __index__"
    ).split()}  # fmt: skip
    for name in "add sub mul truediv floordiv mod".split():
        ops[f"__r{name}__"] = (lambda f: lambda v, other: f(other, v))(getattr(o, name))
    ops.update(__len__=len, __iter__=iter, __bool__=bool, __int__=int, __float__=float, __str__=str)
    return ops


_FORWARD = {
    "__len__": "len",
    "__iter__": "list",
    "__getitem__": "getitem",
    "__contains__": "contains",
}


def _value_method(op, fn):
    def method(self, *args):
        value = self._value()
        if type(value) is Remote:  # an object of the program: a token
            if op in ("__eq__", "__ne__"):
                return False
            if op == "__str__":
                return repr(value)
            if op in _FORWARD:  # asked of the program: its answer is plain data
                fn_name = _FORWARD[op]
                conn = object.__getattribute__(value, "_conn")
                target = object.__getattribute__(value, "_target")
                label = f"{fn_name}({value._label()})"
                answer = conn.ask("protocol", target, args, None, label, fn_name)
                return iter(answer) if op == "__iter__" else answer
            raise TypeError(f"{value!r} cannot be used in {op.strip('_')} by the test")
        return fn(value, *args)

    method.__name__ = op
    return method


for _op, _fn in _value_ops().items():
    setattr(Remote, _op, _value_method(_op, _fn))


class _Raises:
    """``pytest.raises`` as a context manager (never catches an exit of the program)."""

    def __init__(self, kinds, match=None):
        self.kinds, self.match, self.value = kinds, match, None

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is None:
            raise AssertionError(f"DID NOT RAISE {self.kinds}")
        if not issubclass(kind, self.kinds) or issubclass(kind, CandidateGone):
            return False
        if self.match is not None and not re.search(self.match, str(value)):
            raise AssertionError(f"{value!r} does not match {self.match!r}")
        self.value = value
        return True


class _Approx:
    """``pytest.approx``: numbers (and lists, tuples, dicts of them) within tolerance."""

    def __init__(self, expected, rel=None, abs=None):  # noqa: A002 - pytest's names
        self.expected, self.rel, self.abs = expected, rel, abs

    def _close(self, a, b):
        if type(b) in (list, tuple):
            return type(a) in (list, tuple) and len(a) == len(b) and all(map(self._close, a, b))
        if type(b) is dict:
            return (
                type(a) is dict and a.keys() == b.keys() and all(self._close(a[k], b[k]) for k in b)
            )
        if type(a) not in (int, float) or type(b) not in (int, float):
            return a == b
        rel = 1e-6 if self.rel is None else self.rel
        tol = max(rel * abs(b), 1e-12 if self.abs is None else self.abs)
        return a == b or abs(a - b) <= tol

    def __eq__(self, other):
        if type(other) is Remote:
            other = other._value()
            if type(other) is Remote:
                return False
        return self._close(other, self.expected)

    __hash__ = None

    def __repr__(self):
        return f"approx({self.expected!r})"


def _pytest_shim():
    """A minimal ``pytest`` for pytest-style test files: ``raises``, ``approx``, ``fail``,
    ``skip`` and ``mark.parametrize`` (the real one is not importable in the sandbox)."""
    import types

    mod = types.ModuleType("pytest")

    def raises(kinds, *args, match=None, **kwargs):
        ctx = _Raises(kinds, match)
        if not args:
            return ctx
        with ctx:
            args[0](*args[1:], **kwargs)
        return ctx

    class _Skip(Exception):
        pass

    def parametrize(names, values, **_):
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)

        def mark(fn):
            sets = getattr(fn, "_r1_params", [])
            rows = [v if len(names) > 1 else (v,) for v in values]
            fn._r1_params = [*sets, [dict(zip(names, row, strict=True)) for row in rows]]
            return fn

        return mark

    mod.raises, mod.approx, mod.skip_exception = raises, _Approx, _Skip

    def fail(msg=""):
        raise AssertionError(msg)

    def skip(msg=""):
        raise _Skip(msg)

    mod.fail, mod.skip = fail, skip
    mod.mark = types.SimpleNamespace(parametrize=parametrize, **{
        k: (lambda *a, **k: (a[0] if a and callable(a[0]) else (lambda fn: fn)))
        for k in ("skipif", "xfail", "timeout", "slow", "filterwarnings", "usefixtures")
    })  # fmt: skip
    return mod


def _run_pytest(namespace, name):
    """Run the test function (or ``Class.method``) ``name`` of a pytest-style file."""
    import itertools

    owner, _, method = name.rpartition(".")
    fn = getattr(namespace[owner](), method) if owner else namespace[name]
    sets = getattr(fn, "_r1_params", None) or [[{}]]
    for combo in itertools.product(*sets):
        kwargs = {}
        for part in combo:
            kwargs.update(part)
        fn(**kwargs)


def _failure(err, script):
    """Where the test script failed, and why."""
    import traceback

    line = None
    for frame in traceback.extract_tb(err.__traceback__):
        if frame.filename == "<test>":
            line = frame.lineno
    text = f"{type(err).__name__}: {str(err)[:300]}".rstrip(": ")
    lines = script.splitlines()
    if line is not None and 0 < line <= len(lines):
        return f"line {line}: {lines[line - 1].strip()[:200]}", text
    return "", text


def _judge_namespace(conn, names, entry):
    """The test's globals: the program's names as proxies (constants as values, modules
    imported here), never shadowing a builtin unless it is the entry point."""
    import builtins
    import importlib
    import types

    ns = {"__name__": "__test__", "__builtins__": builtins}
    module = types.ModuleType("solution")
    for name, info in names.items():
        if type(name) is not str or not name.isidentifier() or name.startswith("__"):
            continue
        if type(info) is not dict or (hasattr(builtins, name) and name != entry):
            continue
        if "module" in info:
            mod_name = str(info["module"])
            if mod_name not in sys.modules and mod_name.split(".")[0] not in STDLIB:
                continue
            try:
                ns[name] = importlib.import_module(mod_name)
            except Exception:  # noqa: BLE001
                continue
        elif "value" in info:
            ns[name] = _unpack(info["value"], conn)
        else:
            ns[name] = Remote(conn, {"name": name})
        setattr(module, name, ns[name])
    if entry:
        ns[entry] = Remote(conn, {"name": entry})
        setattr(module, entry, ns[entry])
    ns["__pytest_run__"] = lambda name: _run_pytest(ns, str(name))
    for alias in ("solution", "main", "candidate", "submission"):
        sys.modules[alias] = module
    sys.modules["pytest"] = _pytest_shim()
    return ns


def run_judge(test, conn):
    """Run a script test against the program behind ``conn``: the verdict (a dict)."""
    script = str(test.get("script", ""))
    entry = test.get("entry") or None
    try:
        hello = conn.receive()
        if type(hello.get("names")) is not dict:
            conn._die("the program broke the call protocol")
        ns = _judge_namespace(conn, hello["names"], entry)
        exec(compile(str(test.get("setup") or ""), "<setup>", "exec"), ns)
        if entry:
            ns[entry] = Remote(conn, {"name": entry})
        exec(compile(script, "<test>", "exec"), ns)
    except BaseException as err:  # noqa: BLE001 - every way out of the script is a verdict
        where, why = _failure(err, script)
        if conn.gone:
            why = conn.gone
        return {"passed": False, "where": where, "why": why, "last": conn.last}
    if conn.gone:
        return {"passed": False, "where": "", "why": conn.gone, "last": conn.last}
    if not conn.calls:
        return {
            "passed": False,
            "where": "",
            "why": "the test never called the program",
            "last": "",
        }
    return {"passed": True, "where": "", "why": "", "last": ""}


def judge_main(req, test, verdict_w, sock):
    """Runs in the forked judge process; never returns."""
    try:
        os.setsid()
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.dup2(verdict_w, RESULT_FD)
        os.dup2(sock, JUDGE_FD)
        os.closerange(JUDGE_FD + 1, 1 << 16)
        _limits(req)
        _drop_privileges(dumpable=False)
        os.chdir("/")
        os.environ.clear()
        os.environ.update({"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        if hasattr(sys, "set_int_max_str_digits"):
            sys.set_int_max_str_digits(0)
        verdict = run_judge(test, _Conn(JUDGE_FD))
        write_frame(
            RESULT_FD, {k: str(v)[:600] if k != "passed" else v for k, v in verdict.items()}
        )
    except BaseException:  # noqa: BLE001 - no verdict: the test fails
        pass
    os._exit(0)


# -- the runner side --------------------------------------------------------------------


def _signal_all():
    """SIGKILL every process of the candidate uid (from that uid: ``kill(-1)``)."""
    if ROOT:
        pid = os.fork()
        if pid == 0:
            try:
                os.setresuid(UID, UID, UID)
                for _ in range(100):
                    try:
                        os.kill(-1, signal.SIGKILL)
                    except ProcessLookupError:
                        break
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
    else:
        for _ in range(100):
            try:
                os.kill(-1, signal.SIGKILL)  # same uid: everything but ourselves (and init)
            except ProcessLookupError:
                break


def _reap():
    while True:  # we may be pid 1 of the namespace and inherit orphans
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def _uid_processes():
    me, found = os.getpid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in (me, 1):
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as fh:
                status = fh.read()
        except OSError:
            continue
        _, sep, tail = status.partition(b"\nUid:")
        fields = tail.split(None, 1)
        if sep and fields and fields[0].isdigit() and int(fields[0]) == UID:
            found.append(int(name))
    return found


def kill_candidates(pid):
    """Kill every process of the candidate uid and wait until they are gone (reaped).

    Only when the candidate uid is ours alone (``sweep``: a dropped uid, or a container);
    otherwise (no isolation, not root) only the test's process group is killed.
    """
    if not CFG.get("sweep"):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        _reap()
        return
    end = time.monotonic() + 2.0
    if CFG.get("pid_ns") and os.getpid() == 1:  # init of our own pid namespace: everyone
        while time.monotonic() < end:  # else in it is a candidate; kill(-1) spares us
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                return
            try:
                os.waitpid(-1, 0)  # orphans are ours to reap
            except ChildProcessError:
                time.sleep(0.0005)
        return
    while True:
        _signal_all()
        _reap()
        if not _uid_processes() or time.monotonic() > end:
            return
        time.sleep(0.001)


def self_test():
    """Run a trivial program the way candidates run; ``None`` when isolation works."""
    req = {"code": "import os\nprint(os.getuid(), os.getgid())", "time_limit": 10, "memory_mb": 256}
    out = run_test(req, {"input": ""})
    want = f"{UID} {GID}\n"
    if out["status"] != "ok" or out["stdout"] != want or out.get("exit_code") != 0:
        return f"self-test failed: {out['status']} exit={out.get('exit_code')} {out['stderr'][-300:]!r}"
    return None


def _wipe(folder):
    """Empty ``folder``: only ever called on folders private to this sandbox (``private_tmp``)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass


def _split_frames(buf):
    """The program's result frames as raw JSON text: the judge parses them, not the runner
    (a 1 MiB frame of ``[[],[],...]`` would take the runner 80 MiB to parse)."""
    frames, i = [], 0
    while i + 4 <= len(buf):
        (n,) = struct.unpack(">I", buf[i : i + 4])
        if i + 4 + n > len(buf):
            break
        frames.append(bytes(buf[i + 4 : i + 4 + n]).decode("utf-8", "replace"))
        i += 4 + n
    return frames


class _Capture:
    """The output pipes of a test, read until they close or a cap is passed."""

    def __init__(self, caps):
        self.bufs = {fd: bytearray() for fd in caps}
        self.left = {fd: cap for fd, (cap, _) in caps.items()}
        self.keep = {fd: keep for fd, (_, keep) in caps.items()}
        self.open = set(caps)
        self.over = False

    def read(self, timeout, extra=()):
        """Wait up to ``timeout`` seconds for data (or one of ``extra`` fds); read it."""
        ready = select.select([*self.open, *extra], [], [], max(0.0, timeout))[0]
        for fd in ready:
            if fd not in self.open:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                self.open.discard(fd)
                continue
            room = self.keep[fd] - len(self.bufs[fd])
            if room > 0:
                self.bufs[fd] += chunk[:room]
            self.left[fd] -= len(chunk)
            if self.left[fd] < 0:
                self.over = True

    def text(self, fd, limit):
        return bytes(self.bufs[fd][:limit]).decode("utf-8", "replace")

    def close(self):
        for fd in self.bufs:
            os.close(fd)


def _wait_program(pid, cap, deadline):
    """Read the program's pipes until it exited and they closed: (verdict, status, exited).

    A process left behind that keeps a pipe open (a detached child holding stdout) cannot
    stall the runner: past the deadline (or half a second after the exit) the test is a
    timeout.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    status, exited, verdict, limit = None, False, "ok", deadline
    while verdict == "ok":
        if not exited:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                exited, status = True, st
                kill_candidates(pid)  # left-over writers die; what they wrote stays readable
                limit = max(deadline, time.monotonic() + 0.5)
        if exited and not cap.open:
            break
        now = time.monotonic()
        if now >= limit:
            verdict = "timeout"
            break
        wait = limit - now
        if pidfd is None and not exited:
            wait = min(wait, 0.005)
        cap.read(wait, [pidfd] if pidfd is not None and not exited else [])
        if cap.over:
            verdict = "output_limit"
    if pidfd is not None:
        os.close(pidfd)
    return verdict, status, exited


def _end(pids, status=None, exited=True):
    """Kill the test's processes (and everything of the candidate uid); the first one's
    wait status."""
    for pid in pids:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass
    kill_candidates(pids[0])
    for i, pid in enumerate(pids):
        if i or not exited:
            try:
                st = os.waitpid(pid, 0)[1]
            except ChildProcessError:
                st = None
            if not i:
                status = st
    return status


def _workdir():
    workdir = os.path.join("/tmp", f"w{os.getpid()}-{time.monotonic_ns()}")
    os.mkdir(workdir, 0o700)
    if ROOT:
        os.chown(workdir, UID, GID)
    return workdir


def _clean(workdir):
    shutil.rmtree(workdir, ignore_errors=True)
    if CFG.get("private_tmp"):  # /tmp and /dev/shm are this sandbox's own: what a candidate
        _wipe("/tmp")  # left there goes (never the host's: not without isolation)
        _wipe("/dev/shm")


def _exit_fields(result, status, verdict, stderr):
    if status is None:
        return
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        result["signal"] = sig
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and verdict == "ok"):
            result["status"] = "timeout" if sig == signal.SIGXCPU else "killed"
    elif os.WIFEXITED(status):
        result["exit_code"] = os.WEXITSTATUS(status)
        if result["exit_code"] == 70 and stderr.startswith(b"sandbox setup failed"):
            result["status"] = "setup_error"


def run_test(req, test):
    """Run one test of the program: its raw outcome (never a verdict, except that of a
    script test's judge process)."""
    if "script" in test:
        return run_script_test(req, test)
    out_cap = int(req.get("output_limit", 1 << 20))
    workdir = _workdir()
    in_path = workdir + ".in"
    with open(in_path, "w", encoding="utf-8") as fh:
        fh.write(test.get("input", ""))
    in_fd = os.open(in_path, os.O_RDONLY)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    res_r, res_w = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        child_main(req, test, workdir, (in_fd, out_w, err_w, res_w))
    for fd in (in_fd, out_w, err_w, res_w):
        os.close(fd)
    os.unlink(in_path)
    cap = _Capture(
        {out_r: (out_cap, out_cap), err_r: (1 << 20, STDERR_KEEP), res_r: (RES_CAP,) * 2}
    )
    verdict, status, exited = _wait_program(pid, cap, start + float(req["time_limit"]))
    elapsed = time.monotonic() - start
    status = _end([pid], status, exited)
    cap.close()
    _clean(workdir)
    result = {"status": verdict, "elapsed": round(elapsed, 4)}
    _exit_fields(result, status, verdict, bytes(cap.bufs[err_r]))
    result["stdout"] = cap.text(out_r, out_cap)
    result["stderr"] = cap.text(err_r, STDERR_KEEP)
    if "exprs" in test:
        result["frames"] = _split_frames(cap.bufs[res_r])
    return result


def run_script_test(req, test):
    """A script test: the program serves calls, a judge process runs the test script and
    reports the verdict on a pipe of its own (see ``run_judge``)."""
    import socket

    out_cap = int(req.get("output_limit", 1 << 20))
    workdir = _workdir()
    in_fd = os.open("/dev/null", os.O_RDONLY)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    ver_r, ver_w = os.pipe()
    prog_sock, judge_sock = (s.detach() for s in socket.socketpair())
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(judge_sock)
        child_main(req, test, workdir, (in_fd, out_w, err_w, prog_sock))
    jpid = os.fork()
    if jpid == 0:
        os.close(prog_sock)
        judge_main(req, test, ver_w, judge_sock)
    for fd in (in_fd, out_w, err_w, ver_w, prog_sock, judge_sock):
        os.close(fd)
    cap = _Capture({out_r: (out_cap, 0), err_r: (1 << 20, STDERR_KEEP), ver_r: (VERDICT_CAP,) * 2})
    verdict, deadline = "ok", start + float(req["time_limit"])
    while ver_r in cap.open and verdict == "ok":
        now = time.monotonic()
        if now >= deadline:
            verdict = "timeout"
            break
        cap.read(deadline - now)
        if cap.over:
            verdict = "output_limit"
    elapsed = time.monotonic() - start
    _end([pid, jpid])
    cap.close()
    _clean(workdir)
    result = {"status": verdict, "elapsed": round(elapsed, 4), "stdout": ""}
    result["stderr"] = cap.text(err_r, STDERR_KEEP)
    frames = _split_frames(cap.bufs[ver_r])
    if verdict == "ok" and frames:
        try:
            result["verdict"] = json.loads(frames[0])
        except ValueError:
            pass
    return result


def write_results(wfd, req):
    """Run every test of ``req`` and write one reply frame, encoded test by test so the
    runner never holds more than ``RESULTS_BUDGET`` of output (a test past it fails)."""
    parts, budget, last = [], RESULTS_BUDGET, "ok"
    for test in req["tests"]:
        if last in ("timeout", "skipped"):
            result = {"status": "skipped"}  # one timeout is enough: fail fast
        else:
            result = run_test(req, test)
        last = result["status"]
        part = json.dumps(result, ensure_ascii=False).encode("utf-8", "replace")
        if len(part) > budget:
            result = {"status": "output_limit", "elapsed": result.get("elapsed", 0), "stdout": ""}
            result.update(stderr="", frames=[]) if "exprs" in test else result.update(stderr="")
            part = json.dumps(result).encode()
        budget -= len(part)
        parts.append(part)
    body = b'{"results": [' + b", ".join(parts) + b"]}"
    del parts
    os.write(wfd, struct.pack(">I", len(body)))
    view = memoryview(body)
    while view:
        view = view[os.write(wfd, view) :]


def serve():
    try:  # the OOM killer spares the runner (needs privilege; best effort)
        with open("/proc/self/oom_score_adj", "w") as fh:
            fh.write("-1000")
    except OSError:
        pass
    _libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # same-uid candidates: no /proc/PID/fd, no ptrace
    if CFG.get("build_root"):
        build_root()
    for name in PRELOAD.split():
        try:
            __import__(name)
        except ImportError:
            pass
    _libc()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    rfd, wfd = os.dup(0), os.dup(1)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1):
        os.dup2(null, fd)
    problem = self_test()
    if problem is not None:
        write_frame(wfd, {"ready": False, "error": problem})
        return
    write_frame(wfd, {"ready": True, "pid": os.getpid(), "uid": os.getuid()})
    while True:
        req = read_frame(rfd)
        if req is None:
            return
        if req.get("ping"):
            write_frame(wfd, {"pong": True})
            continue
        try:
            write_results(wfd, req)
        except OSError as err:
            if err.errno == errno.EPIPE:
                return
            write_frame(wfd, {"error": f"runner failed: {err!r}"})
        except Exception as err:  # noqa: BLE001
            write_frame(wfd, {"error": f"runner failed: {err!r}"})


if __name__ == "__main__":
    serve()
