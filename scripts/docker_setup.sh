#!/usr/bin/env bash
# Make the Docker sandbox usable on this machine, without any registry (and install
# bubblewrap for LocalSandbox when missing):
#   1. install docker.io (Debian/Ubuntu, as root) when no engine binary exists;
#   2. start `dockerd --iptables=false --bridge=none` when no engine answers;
#   3. build the sandbox image with `docker import` of a folder holding this machine's Python
#      runtime (stdlib only) plus a few shell tools.
# Idempotent: does nothing that is already done. Exits non-zero (and the Docker tests skip
# with a reason) where no engine can run.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE="${R1_SANDBOX_IMAGE:-r1-sandbox:latest}"
PY="${R1_SANDBOX_PYTHON:-$(if [ -x .venv/bin/python ]; then echo .venv/bin/python; else command -v python3; fi)}"
log() { echo "[docker_setup] $*"; }

engine_up() { timeout 10 docker info >/dev/null 2>&1; }

# LocalSandbox prefers bubblewrap (and falls back to util-linux unshare): install it too, so
# both isolation paths are exercised; R1_INSTALL_BWRAP=0 skips this step.
if [ "${R1_INSTALL_BWRAP:-1}" != 0 ] && ! command -v bwrap >/dev/null 2>&1 \
   && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  log "installing bubblewrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y bubblewrap >/dev/null 2>&1 \
    || log "bubblewrap not installed (LocalSandbox will use unshare)"
fi

if ! engine_up; then
  if ! command -v dockerd >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      log "installing docker.io"
      DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io >/dev/null 2>&1 \
        || { apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io >/dev/null; }
    else
      log "no dockerd and cannot install it (needs root and apt-get)"; exit 1
    fi
  fi
  if ! engine_up; then
    [ "$(id -u)" = 0 ] || { log "no engine answers and starting one needs root"; exit 1; }
    log "starting dockerd (log: /tmp/r1-dockerd.log)"
    nohup dockerd --iptables=false --bridge=none >/tmp/r1-dockerd.log 2>&1 &
    for _ in $(seq 60); do engine_up && break; sleep 1; done
    engine_up || { log "dockerd did not come up; see /tmp/r1-dockerd.log"; tail -5 /tmp/r1-dockerd.log; exit 1; }
  fi
fi
log "engine up: $(docker version --format '{{.Server.Version}}' 2>/dev/null)"

PREFIX="$("$PY" -c 'import os, sys; print(os.path.realpath(sys.base_prefix))')"
PYBIN="$("$PY" -c 'import os, sys; print(os.path.realpath(sys.executable))')"
VERSION="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
TAG="python=${PYBIN}"
if docker image inspect "$IMAGE" --format '{{index .Config.Labels "r1.runtime"}}' 2>/dev/null | grep -qx "$TAG"; then
  log "image $IMAGE already built for $PYBIN"; exit 0
fi

ROOTFS="$(mktemp -d /tmp/r1-sandbox-rootfs.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT
log "building $IMAGE from $PREFIX (Python $VERSION)"
mkdir -p "$ROOTFS$PREFIX" "$ROOTFS/tmp" "$ROOTFS/etc" "$ROOTFS/usr/local/bin" "$ROOTFS/bin"
tar -C "$PREFIX" -cf - \
  --exclude="lib/python$VERSION/site-packages/*" --exclude="lib/python$VERSION/test" \
  --exclude="lib/python$VERSION/idlelib" --exclude="lib/python$VERSION/tkinter" \
  --exclude="lib/python$VERSION/ensurepip" --exclude='include' --exclude='share' \
  . | tar -C "$ROOTFS$PREFIX" -xf -
ln -s "$PYBIN" "$ROOTFS/usr/local/bin/python3"
# a few tools candidates may call (sh, sleep, nohup, ...), with their shared libraries
TOOLS="sh dash bash sleep nohup true false cat ls env echo kill"
for t in $TOOLS; do
  p="$(command -v "$t" || true)"
  if [ -n "$p" ] && [ -f "$p" ]; then cp -L "$p" "$ROOTFS/bin/$t"; fi
done
for f in "$PYBIN" "$ROOTFS"/bin/* $(find "$ROOTFS$PREFIX/lib" -name '*.so*' -type f); do
  { ldd "$f" 2>/dev/null || true; } | { grep -o '/[^ ]*' || true; } | while read -r lib; do
    [ -e "$lib" ] || continue
    mkdir -p "$ROOTFS$(dirname "$lib")"
    cp -Ln "$lib" "$ROOTFS$lib" 2>/dev/null || true
  done
done
printf 'root:x:0:0::/:/bin/false\nnobody:x:65534:65534::/tmp:/bin/false\n' >"$ROOTFS/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOTFS/etc/group"
chmod 755 "$ROOTFS" "$ROOTFS/etc" "$ROOTFS/usr" "$ROOTFS/usr/local" "$ROOTFS/usr/local/bin" "$ROOTFS/bin"
d="$PREFIX"; while [ "$d" != "/" ]; do chmod 755 "$ROOTFS$d"; d="$(dirname "$d")"; done
chmod 1777 "$ROOTFS/tmp"
tar -C "$ROOTFS" -cf - . | docker import \
  --change 'USER 65534:65534' --change 'WORKDIR /tmp' \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  --change "LABEL r1.runtime=$TAG" - "$IMAGE" >/dev/null
docker run --rm --network none "$IMAGE" python3 -I -S -c 'import sys; print("sandbox image ok:", sys.version.split()[0])'
