# Sourced (bash) by every script of this project that installs packages on
# the host: test/readme/needs.sh (make demo, make test), test/readme/check.sh,
# packaging/check.sh, test/e2e/run.sh, test/e2e/qemu.sh and .ci/run.
#
# apt_get ARGS...: apt-get ARGS that waits for another apt or dpkg (an
# unattended upgrade, a second CI job) instead of failing at once. Option
# DPkg::Lock::Timeout makes apt-get wait for dpkg's frontend lock, but apt
# 2.6 (Debian 12) does not apply it to the lists lock that "apt-get update"
# takes, nor to the archives lock that apt-daily's download of upgrades
# holds without the frontend lock: those fail at once with "Could not get
# lock". So the whole call is repeated while that is why it failed, for up
# to APT_LOCK_WAIT seconds (default 600).
#
# apt_install PKG...: installs PKG... (no recommends, no questions). It runs
# "apt-get update" first only when apt knows no candidate for one of them
# (no lists yet, as in a fresh debootstrap root), and once more before a
# second try if the install fails (lists older than the archive: a 404).
APT_LOCK_WAIT=${APT_LOCK_WAIT:-600}

apt_get() {
  local out rc end=$((SECONDS + APT_LOCK_WAIT))
  out=$(mktemp)
  while :; do
    # A subshell with pipefail: apt-get's status, not tee's, and the
    # caller's shell options stay as they are.
    if (set -o pipefail; DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$APT_LOCK_WAIT" "$@" 2>&1 | tee "$out"); then
      rc=0
    else
      rc=$?
    fi
    if [ "$rc" != 0 ] && grep -q 'Could not get lock\|Unable to lock' "$out" && [ $SECONDS -lt $end ]; then
      echo "apt-get $1: another apt or dpkg holds its lock; trying again in 5 s (up to ${APT_LOCK_WAIT} s in all)"
      sleep 5
      continue
    fi
    rm -f "$out"
    return "$rc"
  done
}

apt_install() {
  local p
  for p in "$@"; do
    if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [^(]'; then
      apt_get update -q || return
      break
    fi
  done
  apt_get install -y -q --no-install-recommends "$@" && return 0
  echo "apt-get install failed; updating the package lists and trying once more"
  apt_get update -q || return
  apt_get install -y -q --no-install-recommends "$@"
}
