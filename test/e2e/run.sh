#!/bin/bash
# make e2e: the real-system tier. Needs root (debootstrap, systemd-nspawn).
#
# Tier "systemd" (this file): a Debian 12 root with real systemd as PID 1 in
# systemd-nspawn, the product installed into it as the packages will lay it
# out, and test/e2e/guest/systemd-scenarios.sh run inside as a oneshot unit.
# The host kernel has no ip_vs, so this tier runs the master with
# --without-ipvs; the QEMU tier (real kernel IPVS) is separate.
#
# The root file system is built once with debootstrap and cached as a tar in
# .cache/e2e (git-ignored). Output: test/e2e/out/report.txt (per scenario:
# PASS/FAIL and the evidence) and journal.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
TOP=$PWD
CACHE=$TOP/.cache/e2e
OUT=$TOP/test/e2e/out
[ "$(id -u)" = 0 ] || { echo "make e2e needs root (debootstrap, systemd-nspawn)" >&2; exit 1; }

need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
if [ ${#need[@]} -gt 0 ]; then
  . test/readme/apt.sh # apt-get that waits for the dpkg and apt locks
  apt_install "${need[@]}"
fi

mirror() { # the host's own Debian mirror, never hard-coded
  local u
  u=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$u" ] || u=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  echo "${u:-http://deb.debian.org/debian}"
}

# The cache key follows what goes into the root, so a change of the package
# list rebuilds it instead of testing against a stale one.
PKGS=systemd,systemd-sysv,dbus,procps,iproute2,perl-base
ROOTFS=$CACHE/rootfs-$(echo "bookworm $PKGS" | sha256sum | cut -c1-12).tar
mkdir -p "$CACHE"
if [ ! -f "$ROOTFS" ]; then
  echo "=== building the Debian 12 root (cached in $CACHE)"
  rm -rf "$CACHE/rootfs-build"
  debootstrap --variant=minbase \
    --include="$PKGS" \
    bookworm "$CACHE/rootfs-build" "$(mirror)" >"$CACHE/debootstrap.log" 2>&1 ||
    { tail -20 "$CACHE/debootstrap.log"; exit 1; }
  tar -C "$CACHE/rootfs-build" -cf "$ROOTFS.tmp" .
  mv "$ROOTFS.tmp" "$ROOTFS"
  rm -rf "$CACHE/rootfs-build"
fi

echo "=== building the packages"
rm -f dist/*.deb
make -s package >/dev/null
DEBS=$(ls dist/lvs-feedbackd-master_*.deb dist/lvs-feedbackd-agent_*.deb)

WORK=$(mktemp -d /tmp/feedbackd-e2e.XXXXXX)
cleanup() { rm -rf "$WORK"; rm -rf /run/systemd/nspawn/propagate/"$(basename "$WORK")"* 2>/dev/null || true; }
trap cleanup EXIT
R=$WORK/root
mkdir -p "$R"
tar -C "$R" -xf "$ROOTFS"

# The guest installs the packages itself with apt (scenario S0), as an
# operator would; here they are only put where it can reach them, and the
# test's own configuration is staged next to them (written after the
# install, over the packaged conffiles).
install -d "$R/root/debs" "$R/root/e2e-etc"
install -m644 $DEBS "$R/root/debs/"
# trust-agent-address: every agent here connects from 127.0.0.1 (one
# network namespace) and names its realserver with "address =", which the
# master otherwise refuses as an untrusted claim.
cat >"$R/root/e2e-etc/master.conf" <<'CONF'
loglevel = INFO
trust-agent-address = yes
keepalive-interval = 1
keepalive-timeout = 2
keepalive-retries = 1
removal-interval = 3
# The weight law's timers, shortened like the others (defaults 5 and 10).
weight-smoothing = 2
slow-start = 2

[virtual-service]
name = web
address = 192.0.2.1
protocol = tcp
port = 80
scheduler = wrr
CONF
cat >"$R/root/e2e-etc/agent.conf" <<'CONF'
director = 127.0.0.1
master-timeout = 5
loglevel = INFO
CONF
# Test-only drop-ins: no ip_vs in a container on this kernel, and a short
# watchdog so the SIGSTOP scenario takes seconds, not WatchdogSec=20s.
install -d "$R/etc/systemd/system/feedbackd-master.service.d"
cat >"$R/etc/systemd/system/feedbackd-master.service.d/e2e.conf" <<'CONF'
[Service]
ExecStart=
ExecStart=/usr/sbin/feedbackd-master --without-ipvs
WatchdogSec=4s
CONF

install -d "$R/usr/local/lib/e2e"
install -m755 test/e2e/guest/systemd-scenarios.sh "$R/usr/local/lib/e2e/scenarios.sh"
install -m644 test/e2e/guest/lib.sh "$R/usr/local/lib/e2e/lib.sh"
cat >"$R/etc/systemd/system/e2e-scenarios.service" <<'UNIT'
[Unit]
Description=feedbackd end-to-end scenarios
After=basic.target dbus.service
[Service]
Type=oneshot
ExecStart=/usr/local/lib/e2e/scenarios.sh
# Power off however the script ends (killed at the timeout included), so a
# stuck scenario costs minutes, not the whole CI budget.
ExecStopPost=/bin/systemctl --no-block poweroff
TimeoutStartSec=300
StandardOutput=journal+console
[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/e2e-scenarios.service "$R/etc/systemd/system/multi-user.target.wants/e2e-scenarios.service"
# No periodic apt jobs: apt-daily (Persistent=, so due at the first boot)
# would hold apt's locks while S0 installs the packages.
for m in apt-daily.timer apt-daily-upgrade.timer; do ln -sf /dev/null "$R/etc/systemd/system/$m"; done
echo e2e >"$R/etc/hostname"

rm -rf "$OUT"; mkdir -p "$OUT"
echo "=== booting systemd in systemd-nspawn"
start=$SECONDS
set +e
timeout 420 systemd-nspawn -q -b -D "$R" --register=no --keep-unit --private-network \
  --console=read-only --bind="$OUT:/mnt/out" </dev/null >"$OUT/console.txt" 2>&1
rc=$?
set -e
echo "=== guest finished in $((SECONDS - start)) s (nspawn rc=$rc)"

cat "$OUT/report.txt" 2>/dev/null || true
echo
if ! grep -q '^DONE' "$OUT/results.txt" 2>/dev/null; then
  echo "e2e: the guest did not finish its scenarios; console:" >&2
  tail -40 "$OUT/console.txt" >&2
  exit 1
fi
passed=$(grep -c '^PASS' "$OUT/results.txt" || true)
failed=$(grep -c '^FAIL' "$OUT/results.txt" || true)
echo "report: test/e2e/out/report.txt"
echo "e2e: $passed passed, $failed failed"
[ "$failed" = 0 ]
