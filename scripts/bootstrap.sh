#!/usr/bin/env bash
# Install everything trio-fuse-uring needs on a fresh Debian 12 machine (run as root),
# then build the package (with its cffi io-uring extension) into ./.venv.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in liburing-dev fuse3 python3-venv python3-dev gcc pkg-config fio; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "bootstrap: installing ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# FUSE-over-io-uring is off by default (Linux 6.14+). Without it everything still works
# over /dev/fuse; the library says so when it falls back.
if [ -w /sys/module/fuse/parameters/enable_uring ]; then
    echo Y > /sys/module/fuse/parameters/enable_uring
else
    echo "bootstrap: cannot enable FUSE io-uring (not root or kernel < 6.14): /dev/fuse only" >&2
fi
# fusectl lets an unmount that hangs be aborted; distributions mount it at boot.
if [ -d /sys/fs/fuse/connections ] && ! mountpoint -q /sys/fs/fuse/connections; then
    mount -t fusectl none /sys/fs/fuse/connections || true
fi
# Unprivileged mounts through fusermount3 need /dev/fuse readable by all (the
# distribution default is 0666; some VMs ship 0600).
[ -e /dev/fuse ] && chmod 666 /dev/fuse

# Debian's python3 (not one in root's home, which other uids cannot read).
if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test,lint]'
.venv/bin/python -c "import trio_fuse_uring._ring_cffi" \
    || { echo "bootstrap: the io-uring extension did not build" >&2; exit 1; }
echo "bootstrap: ready (.venv)"
