#!/bin/bash
# make bench-peers: feedbackd-master against Debian's haproxy agent-check at
# the same agent counts (issue 20). Installs haproxy from Debian's packages
# when it is missing (as root; otherwise prints the apt-get line and stops),
# raises the open-files limit as far as this machine allows, then runs
# test/bench/peers. Extra arguments go to it (e.g. -reps 5, -baseline
# OLD-MASTER-BINARY, -n 1000). Timings are printed, never judged.
set -euo pipefail
cd "$(dirname "$0")/../../.."
BIN=${BIN:-bin}
GO=${GO:-go}

if ! [ -x /usr/sbin/haproxy ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "bench-peers needs Debian's haproxy: apt-get install haproxy (as root), then run it again" >&2
    exit 1
  fi
  . test/readme/apt.sh
  apt_install haproxy
  # The package starts its own haproxy.service where systemd runs; the
  # bench starts its own instances and needs none other.
fi
/usr/sbin/haproxy -v | sed -n 1p  # sed reads to the end: no SIGPIPE under pipefail

# The limit each side needs is one descriptor per agent in one process.
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt 1048576 ]; then
  # Root with CAP_SYS_RESOURCE can raise the hard limit; a sandbox cannot.
  ulimit -Hn 1048576 2>/dev/null && echo "open files: hard limit raised from $hard to 1048576" \
    || echo "open files: hard limit $hard, and it cannot be raised here (no CAP_SYS_RESOURCE)"
fi
ulimit -n "$(ulimit -Hn)"

$GO build -o "$BIN/scale" ./test/bench/scale
$GO build -o "$BIN/peers" ./test/bench/peers
exec "$BIN/peers" -master "$BIN/feedbackd-master" -scale "$BIN/scale" "$@"
