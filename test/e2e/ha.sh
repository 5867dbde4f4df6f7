#!/bin/bash
# make e2e-ha: a highly available director pair on the real kernel
# (issue 17, items 2 and 3; the recipe is docs/ha.md). Needs root.
#
# The same QEMU guest as make e2e-ipvs (test/e2e/qemu.sh, whose structure
# this follows): Debian 12's kernel under TCG, systemd as PID 1, the
# cached kernel, initramfs and Debian root of test/e2e/qemu/vm.sh, the
# same per-checkout lock. The built .deb packages are staged in the image
# and installed by the guest's first scenario with apt. Debian's
# keepalived is installed into the image here: the packages apt picks for
# this root (its own dpkg status) are downloaded once into
# .cache/e2e/keepalived-debs-ROOTFS and installed with apt-get in a
# chroot, as make experiment does.
#
# The guest (test/e2e/guest/ha-scenarios.sh) runs two director network
# namespaces, each with its own feedbackd-master under systemd and its own
# keepalived doing VRRP for one VIP, three LVS-DR realservers whose agents
# report to both directors, and a client. It fails the active director
# twice (keepalived stopped; link cut) and brings it back.
#
# Results in test/e2e/out/ha: report.txt (evidence per scenario),
# figures.txt (failover times and failed requests: figures, never
# limits), results.txt, journal.txt, console.txt, timings-host.txt. The
# last line printed is "e2e-ha: N passed, N failed"; the exit status is
# non-zero on any failure or if the guest did not finish.
#
# Environment: E2E_HA_TIMEOUT (seconds for the whole VM, default 900),
# E2E_HA_LOCK_WAIT (seconds to wait for another QEMU run of this
# checkout, default 7200), E2E_MASTER_LOGLEVEL (default INFO).
set -euo pipefail
cd "$(dirname "$0")/../.."
TOP=$PWD
GUEST=$TOP/test/e2e/guest
OUT=$TOP/test/e2e/out/ha
VM_TIMEOUT=${E2E_HA_TIMEOUT:-900}
MASTER_LOGLEVEL=${E2E_MASTER_LOGLEVEL:-INFO}
[ "$(id -u)" = 0 ] || { echo "e2e-ha: needs root (debootstrap, chroot, mkfs.ext4 -d of a root file system)" >&2; exit 1; }


. "$TOP/test/e2e/qemu/vm.sh"
vm_timed "host packages" vm_host_packages

# Built before the lock: the wait for another VM need not hold it up.
echo "=== building"
rm -f dist/*.deb
vm_timed "make package" make -s package
DEBS=$(ls dist/lvs-feedbackd-master_*.deb dist/lvs-feedbackd-agent_*.deb)

echo "=== $(date -u +%H:%M:%SZ): taking the QEMU lock"
vm_timed "waiting for the QEMU lock" vm_lock "${E2E_HA_LOCK_WAIT:-7200}"
vm_assets vm_timed

# stage_product ROOT: the built packages and the site configuration the
# guest installs once it runs (nothing under /etc/feedbackd before the
# install: dpkg would see a changed conffile). Both directors read the
# same master.conf, as two real directors would; the agents name both.
stage_product() {
  local r=$1 e=$1/usr/local/lib/e2e/etc
  install -d "$r/usr/local/lib/e2e/debs" "$e"
  install -m644 $DEBS "$r/usr/local/lib/e2e/debs/"
  cat >"$e/master.conf" <<CONF
loglevel = $MASTER_LOGLEVEL
keepalive-interval = 1
keepalive-timeout = 2
keepalive-retries = 1
removal-interval = 3
weight-smoothing = 2
slow-start = 2

[virtual-service]
name = web
address = 10.0.0.10
protocol = tcp
port = 80
scheduler = wrr
CONF
  cat >"$e/agent.conf" <<'CONF'
director = 10.0.0.2, 10.0.0.3
master-timeout = 10
loglevel = INFO
CONF
  chmod 644 "$e"/*
}

install_scenarios() {
  local r=$1
  install -d "$r/usr/local/lib/e2e"
  install -m755 "$GUEST/ha-scenarios.sh" "$r/usr/local/lib/e2e/ha-scenarios.sh"
  install -m644 "$GUEST/lib.sh" "$r/usr/local/lib/e2e/lib.sh"
  install -m644 "$GUEST/net.sh" "$r/usr/local/lib/e2e/net.sh"
  # The recipe, whose keepalived.conf the guest checks with keepalived -t.
  install -m644 "$TOP/docs/ha.md" "$r/usr/local/lib/e2e/ha.md"
  vm_guest_unit "$r" e2e-ha "feedbackd HA director pair scenarios" /usr/local/lib/e2e/ha-scenarios.sh $((VM_TIMEOUT - 60))
}

WORK=$(mktemp -d /tmp/feedbackd-e2e-ha.XXXXXX)
cleanup() {
  vm_kill "$WORK"
  rm -rf "$WORK"
}
trap cleanup EXIT
R=$WORK/root

prepare_image() {
  vm_unpack_root "$R"
  vm_keepalived "$R" "$WORK/keepalived-install.txt"
  stage_product "$R"
  install_scenarios "$R"
  vm_mkfs "$R" "$WORK/root.img" e2e-ha-root
}
echo "=== preparing the root image (kernel $KVER)"
vm_timed "root image (untar, keepalived, stage, mkfs)" prepare_image

SHARE=$WORK/share
echo "=== $(date -u +%H:%M:%SZ): booting Debian's kernel under QEMU TCG; progress:"
VM_SHOW_STATUS=1 vm_boot "$WORK" "$WORK/root.img" 2 2048 "$VM_TIMEOUT" results.txt '^DONE' 'e2e-\(init\|ha\): .*'
vm_unlock
vm_timing "VM (boot, scenarios, power-off)" "$VM_SECONDS"
rm -rf "$OUT"
mkdir -p "$OUT"
cp -a "$SHARE"/. "$WORK/console.txt" "$WORK/keepalived-install.txt" "$OUT/"

vm_tally e2e-ha "$OUT"
echo "figures (test/e2e/out/ha/figures.txt; measured under software emulation, not limits):"
sed 's/^/  /' "$OUT/figures.txt" 2>/dev/null || true
echo "report: test/e2e/out/ha/report.txt, console: test/e2e/out/ha/console.txt"
echo "e2e-ha: $VM_PASSED passed, $VM_FAILED failed"
[ "$VM_FAILED" = 0 ]
