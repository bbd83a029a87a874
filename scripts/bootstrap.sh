#!/usr/bin/env bash
# Install everything trio-fuse-uring needs on a fresh Debian 12 machine (run as root),
# then build the package (with its cffi io-uring extension) into ./.venv.
# Idempotent: a second run only checks (a few seconds) and reinstalls nothing unless the
# build inputs (pyproject.toml, setup.py, the C sources) changed.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { echo "bootstrap: $*"; }
# Fresh VMs run unattended-upgrades at boot: wait for apt's locks instead of failing.
apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"; }
# apt-get update takes the package lists' lock, which that timeout does not cover: retry.
apt_update() {
    local out waited=0
    until out=$(apt_get update -qq 2>&1); do
        if ! grep -q "Could not get lock" <<<"$out" || [ "$waited" -ge 600 ]; then
            echo "$out" >&2
            return 1
        fi
        [ "$waited" -eq 0 ] && step "    another apt run holds the package lists; waiting (up to 10 min)"
        sleep 5
        waited=$((waited + 5))
    done
}

need_apt=()
for pkg in liburing-dev fuse3 python3-venv python3-dev gcc pkg-config fio; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    step "1/5 installing Debian packages: ${need_apt[*]} (waits for other apt runs)"
    apt_update
    apt_get install -y -qq "${need_apt[@]}" >/dev/null
else
    step "1/5 Debian packages: all present"
fi

# FUSE-over-io-uring is off by default (Linux 6.14+). Without it everything still works
# over /dev/fuse; the library says so when it falls back. To keep it on across reboots:
# echo 'options fuse enable_uring=1' > /etc/modprobe.d/fuse-uring.conf
param=/sys/module/fuse/parameters/enable_uring
if [ "$(cat "$param" 2>/dev/null)" = Y ]; then
    step "2/5 FUSE io-uring: enabled"
elif [ -w "$param" ]; then
    echo Y > "$param"
    step "2/5 FUSE io-uring: enabled now (echo Y > $param)"
else
    step "2/5 FUSE io-uring: cannot enable (not root or kernel < 6.14): /dev/fuse only" >&2
fi

# fusectl lets a hung mount be aborted; distributions mount it at boot. Unprivileged
# mounts through fusermount3 need /dev/fuse readable by all (the distribution default is
# 0666; some VMs ship 0600).
if [ -d /sys/fs/fuse/connections ] && ! mountpoint -q /sys/fs/fuse/connections; then
    mount -t fusectl none /sys/fs/fuse/connections || true
fi
[ -e /dev/fuse ] && chmod 666 /dev/fuse
step "3/5 fusectl and /dev/fuse: ready"

# Debian's python3 (not one in root's home, which other uids cannot read).
if [ ! -x .venv/bin/python ]; then
    step "4/5 creating .venv with /usr/bin/python3"
    /usr/bin/python3 -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
else
    step "4/5 .venv: present"
fi

# The stamp names what the install was built from (and this script, which says what to
# install). Python sources need no reinstall: the install is editable (a path entry,
# see pyproject.toml, that mypy follows too).
stamp=.venv/.trio-fuse-uring-build
inputs=$(cat pyproject.toml setup.py trio_fuse_uring/*.c trio_fuse_uring/*.h \
    trio_fuse_uring/_ring_build.py scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" = "$inputs" ] \
    && .venv/bin/python -c "import trio_fuse_uring._ring" 2>/dev/null; then
    step "5/5 package: up to date"
else
    step "5/5 installing the package (with its io-uring extension) and the tools to test, lint, build docs and wheels"
    .venv/bin/python -m pip install -q -e '.[test,lint,docs,wheel]'
    .venv/bin/python -c "import trio_fuse_uring._ring" \
        || { echo "bootstrap: the io-uring extension did not build" >&2; exit 1; }
    echo "$inputs" > "$stamp"
fi
step "ready (.venv); \`.venv/bin/python -m trio_fuse_uring doctor\` checks this machine"
