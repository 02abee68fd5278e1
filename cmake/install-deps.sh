#!/usr/bin/env bash
# Installs the Debian 12 packages that diffeo's build, tests, examples and benchmarks need.
#
#   bash cmake/install-deps.sh            # build + test dependencies
#   bash cmake/install-deps.sh --peers    # also OpenCV and ITK (benchmark peers)
#   bash cmake/install-deps.sh --ccache   # also ccache (faster rebuilds; used by .ci/run)
#
# Idempotent and quick when everything is present: packages are checked with dpkg-query
# first, and `apt-get update` runs only when something is missing. Runs as root, or
# through sudo otherwise. Never asks questions.
set -euo pipefail

packages=(
  cmake make g++            # toolchain
  libeigen3-dev             # small fixed-size linear algebra (core dependency)
  libxtensor-dev            # N-d containers and interop on the CPU
  libtbb-dev                # multi-core CPU backend, and Thrust's TBB device system
  libthrust-dev libcub-dev  # Thrust backend on a host device system (no CUDA needed)
  libpng-dev                # diffeo::io (PNG in and out)
  doctest-dev               # tests
  libboost-dev              # Boost.odeint, the reference in ODE tests and benchmarks
  libbenchmark-dev          # benchmarks (Google Benchmark)
)

for arg in "$@"; do
  case "$arg" in
    --peers) packages+=(libopencv-dev libinsighttoolkit5-dev) ;;
    --ccache) packages+=(ccache) ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "install-deps.sh: unknown argument '$arg' (known: --peers --ccache)" >&2; exit 2 ;;
  esac
done

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps.sh: needs a Debian-based system (dpkg-query and apt-get); install by hand:" >&2
  echo "  ${packages[*]}" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ "$status" == installed ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps.sh: all ${#packages[@]} packages present"
  exit 0
fi

if ((EUID == 0)); then
  as_root=(env)
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo env)  # `env` passes DEBIAN_FRONTEND whatever sudoers keeps
else
  echo "install-deps.sh: missing ${missing[*]}, and neither root nor sudo is available" >&2
  exit 1
fi

echo "install-deps.sh: installing ${missing[*]}"
# apt's chatter goes to a log that is shown only when something fails.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
run_apt() { "${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get -q -y "$@" >>"$log" 2>&1; }
if ! run_apt update || ! run_apt install --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}"; then
  cat "$log" >&2
  echo "install-deps.sh: apt-get failed (output above)" >&2
  exit 1
fi
echo "install-deps.sh: done"
