"""The private root of an ``unshare`` sandbox slot: stdlib only, run as ``python -I -S -c``.

Run as ``python -I -S -c <this file> <runner config> <runner source>`` as root of fresh
mount, pid, net, ipc and uts namespaces (for an ordinary user: of a user namespace too, in
which that user is root). It mounts a small tmpfs root holding read-only binds of the system
paths (``ro_paths``; the installed-package folders in ``hide`` covered by empty read-only
mounts), a few ``/dev`` nodes and a fresh ``/proc``; makes that root read-only; mounts the
size-bounded private ``/tmp`` and ``/dev/shm``; and execs the runner in it through
``unshare --root``. For an ordinary user (``nested_user``) that last step also enters a
nested user namespace in which the user is itself again: the runner and its candidates then
hold no capabilities (no ``chroot`` escape, no remounting). As root the runner keeps its
capabilities, to drop each candidate to a uid of its own.

Every mount happens inside the slot's own mount namespace: nothing outside changes.
"""

import ctypes
import json
import os
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
LIBC = ctypes.CDLL(None, use_errno=True)


def mount(src, dst, fstype, flags, data=None):
    enc = [None if x is None else x.encode() for x in (src, dst, fstype, data)]
    if LIBC.mount(enc[0], enc[1], enc[2], flags, enc[3]) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {src} -> {dst}: {os.strerror(err)}")


def tmpfs(target, options, flags=MS_NOSUID | MS_NODEV):
    mount("tmpfs", target, "tmpfs", flags, options)


def build(cfg, new):
    """Mount the slot's root at ``new`` (read-only but for ``/tmp`` and ``/dev/shm``)."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    tmpfs(new, "size=1m,mode=755")
    for path in cfg["ro_paths"]:
        target = new + path
        if os.path.islink(path):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if not os.path.lexists(target):
                os.symlink(os.readlink(path), target)
        elif os.path.isdir(path):
            os.makedirs(target, exist_ok=True)
            mount(path, target, None, MS_BIND | MS_REC)
            flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV
            mount(None, target, None, flags)
    for path in cfg.get("hide", []):
        if os.path.isdir(new + path):
            tmpfs(new + path, "size=4k,mode=755", MS_RDONLY | MS_NOSUID | MS_NODEV)
    dev = new + "/dev"
    os.makedirs(dev + "/shm")
    for name in ("null", "zero", "random", "urandom", "full"):
        open(f"{dev}/{name}", "w").close()
        mount(f"/dev/{name}", f"{dev}/{name}", None, MS_BIND)
    os.symlink("/proc/self/fd", dev + "/fd")
    for name in ("proc", "tmp", "etc"):
        os.makedirs(f"{new}/{name}", exist_ok=True)
    uid, gid = int(cfg["uid"]), int(cfg["gid"])
    with open(new + "/etc/passwd", "w") as fh:
        fh.write(f"root:x:0:0::/:/bin/false\nsandbox:x:{uid}:{gid}::/tmp:/bin/false\n")
    mount(None, new, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    mount("proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    tmp_mb = int(cfg.get("tmp_mb", 64))
    tmpfs(new + "/tmp", f"size={tmp_mb}m,mode=755")
    tmpfs(dev + "/shm", f"size={max(1, tmp_mb // 4)}m,mode=755")


def main():
    cfg = json.loads(sys.argv[1])
    new = "/mnt" if os.path.isdir("/mnt") else "/tmp"  # a mount point in our namespace only
    build(cfg, new)
    cmd = [cfg["unshare"]]
    if cfg.get("nested_user"):
        cmd += ["--user", f"--map-user={cfg['uid']}", f"--map-group={cfg['gid']}"]
    cmd += [f"--root={new}", "--wd=/", cfg["python"], "-I", "-S", "-c", sys.argv[2], sys.argv[1]]
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
