#!/usr/bin/env bash
# needs.sh demo|test: what "make demo" or "make test" needs beyond Go and
# make, checked before anything runs (the Makefile runs this first).
#
# A missing tool would otherwise surface as a test failure deep in the
# output (test/man without mandoc), or worse as a test that cannot run. So:
# run as root, this installs the missing Debian packages itself (apt-get,
# waiting for the dpkg lock, "apt-get update" only when needed); run as
# anyone else, it stops and prints the one apt-get line to run as root.
# Exit status 0 means everything is there.
set -euo pipefail
cd "$(dirname "$0")/../.."
what=${1:-}
case $what in demo | test) ;; *) echo "usage: $0 demo|test" >&2; exit 2 ;; esac
GO=${GO:-go}

if ! command -v "$GO" >/dev/null 2>&1; then
  echo "make $what: Go is not on PATH. Install Go >= 1.24 from https://go.dev/dl/ (Debian 12's" \
    "golang-go is 1.19, too old) and put its bin directory on PATH." >&2
  exit 1
fi

pkgs=() why=()
need() { # PACKAGE WHY
  case " ${pkgs[*]} " in *" $1 "*) return 0 ;; esac
  pkgs+=("$1")
  why+=("$1: $2")
}
has() { command -v "$1" >/dev/null 2>&1; }

# Go fetches the modules over HTTPS, which needs the CA certificates unless
# every module is in the module cache already (GOPROXY=off: no network).
if [ ! -s /etc/ssl/certs/ca-certificates.crt ] && ! GOPROXY=off "$GO" mod download >/dev/null 2>&1; then
  need ca-certificates "go downloads the modules over HTTPS"
fi
# In a git checkout, go build stamps the binaries with the revision, which
# it asks git for (make test builds binaries too), unless -buildvcs=false.
in_git() {
  local d=$PWD
  while :; do
    [ ! -e "$d/.git" ] || return 0
    [ "$d" != / ] || return 1
    d=$(dirname "$d")
  done
}
case " ${GOFLAGS:-} $("$GO" env GOFLAGS) " in
  *" -buildvcs=false "*) ;;
  *) if in_git && ! has git; then need git "go build reads the revision of this git checkout"; fi ;;
esac
if [ "$what" = test ]; then
  has perl || need perl-base "the perl monitor's tests (internal/monitor)"
  has mandoc || need mandoc "mandoc -T lint of the man pages (test/man)"
  if ! has systemd-analyze || ! has systemd-socket-activate; then
    need systemd "systemd-analyze verify/security of the units (test/units), systemd-socket-activate (test/sdnotify)"
  fi
fi

[ ${#pkgs[@]} -gt 0 ] || exit 0

if ! has apt-get; then
  echo "make $what needs, and this is not a Debian system with apt-get to install them:" >&2
  printf '  %s\n' "${why[@]}" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  sudo=
  has sudo && sudo="sudo "
  {
    echo "make $what needs packages that are not installed:"
    printf '  %s\n' "${why[@]}"
    echo "Nothing was run. Install them as root, then run make $what again:"
    echo "  ${sudo}apt-get install ${pkgs[*]}"
  } >&2
  exit 1
fi
if [ -n "${NEEDS_INSTALLED:-}" ]; then
  echo "make $what: still missing after apt-get install ${NEEDS_INSTALLED}:" >&2
  printf '  %s\n' "${why[@]}" >&2
  exit 1
fi
echo "make $what: installing what it needs (running as root):"
printf '  %s\n' "${why[@]}"
. test/readme/apt.sh
apt_install "${pkgs[@]}"
# Check again: an installed package that does not provide the tool is an
# error here, not a test that fails later.
NEEDS_INSTALLED="${pkgs[*]}" exec "$0" "$what"
