#!/bin/bash
# The real-kernel IPVS tier of make e2e. Needs root.
#
# The development machines' own kernel has no ip_vs, so this boots Debian
# 12's own kernel under QEMU, with software emulation only
# (-accel tcg,thread=multi: /dev/kvm there is kvm_pvm, which cannot run a
# Debian kernel), systemd as PID 1 on a debootstrap root. The guest boots
# WITHOUT the product: the built .deb packages are only copied into the
# image (/usr/local/lib/e2e/debs), with the test's configuration staged
# next to them (/usr/local/lib/e2e/etc), and the first scenario installs
# them with apt on the running system, as an operator would. The guest
# runs test/e2e/guest/ipvs-scenarios.sh as an auto-started oneshot unit
# that powers the VM off when it ends, however it ends.
#
# If test/realipvs exists (real-netlink speed tests, build tag realipvs),
# its test binary is built here (static) and run by the guest's last
# scenario, I-netlink; without that directory the scenario is not run and
# not counted. A build failure is counted as a failure of I-netlink.
#
# The QEMU plumbing is test/e2e/qemu/vm.sh, shared with make experiment.
# Cached under .cache/e2e/qemu (git-ignored), each keyed on its inputs:
#   kernel-KEY/     Debian's kernel: vmlinux, trimmed module tree (qemu/kernel.sh)
#   initrd-KEY.gz   busybox initramfs that mounts the root image (qemu/initramfs.sh)
#   rootfs-KEY.tar  debootstrap minbase root (qemu/rootfs.sh)
# Per run: the root is unpacked, the packages and the scenarios copied in,
# and an ext4 image made of it (mkfs.ext4 -d); the VM gets a 9p share
# where the guest writes report.txt, results.txt, journal.txt and
# timings.txt. They end up in test/e2e/out/ipvs, with console.txt (the
# serial console) and timings-host.txt. The last line printed is
# "e2e-ipvs: N passed, N failed"; the exit status is non-zero on any
# failure or if the guest did not finish.
#
# Environment: E2E_QEMU_TIMEOUT (seconds for the whole VM, default 2400),
# E2E_QEMU_KERNEL=vmlinuz to boot the packaged bzImage instead of the
# faster PVH vmlinux, E2E_MASTER_LOGLEVEL (default INFO; DEBUG also shows
# what moby/ipvs logs).
set -euo pipefail
cd "$(dirname "$0")/../.."
TOP=$PWD
HELPERS=$TOP/test/e2e/qemu
GUEST=$TOP/test/e2e/guest
OUT=$TOP/test/e2e/out/ipvs
VM_TIMEOUT=${E2E_QEMU_TIMEOUT:-2400}
MASTER_LOGLEVEL=${E2E_MASTER_LOGLEVEL:-INFO}
[ "$(id -u)" = 0 ] || { echo "e2e-ipvs: needs root (debootstrap, mkfs.ext4 -d of a root file system)" >&2; exit 1; }


. "$HELPERS/vm.sh"
vm_timed "host packages" vm_host_packages
vm_lock 7200
vm_assets vm_timed

# --- the product ------------------------------------------------------------
echo "=== building"
rm -f dist/*.deb
vm_timed "make package" make -s package
DEBS=$(ls dist/lvs-feedbackd-master_*.deb dist/lvs-feedbackd-agent_*.deb)

# The real-netlink speed tests of test/realipvs (another package's work):
# a static test binary for the guest, if that package exists. NETLINK is
# empty when there is nothing to run; NETLINK_ERR holds a build failure.
NETLINK= NETLINK_ERR=
build_netlink() {
  [ -d test/realipvs ] || return 0
  local bin log
  bin=$(mktemp /tmp/feedbackd-realipvs.XXXXXX) log=$(mktemp)
  rm -f "$bin"
  if ! CGO_ENABLED=0 "${GO:-go}" test -c -tags realipvs -trimpath -o "$bin" ./test/realipvs >"$log" 2>&1; then
    NETLINK_ERR=$(cat "$log")
    echo "e2e-ipvs: building test/realipvs failed (counted as a failure of I-netlink):" >&2
    sed 's/^/  /' "$log" >&2
  elif [ -s "$bin" ]; then
    NETLINK=$bin
  else
    # "go test -c" writes nothing for a package without test files yet.
    echo "=== test/realipvs has no tests yet; I-netlink not run"
  fi
  rm -f "$log"
}
vm_timed "realipvs test binary" build_netlink

# stage_product ROOT: the built packages and the site configuration the
# scenarios install once the guest runs (scenario I0): apt-get install of
# the .deb files, then the configuration copied over the packaged
# examples. Nothing of the product is installed here, and nothing is put
# under /etc/feedbackd: a file there before the install would be a
# locally changed conffile to dpkg. The agent.d/rsN.conf files and their
# netns drop-ins are written by the scenarios themselves, once the
# namespaces exist.
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
# Prometheus metrics, for the ops scenarios (O3).
metrics-listen = 127.0.0.1:9262
# The weight law's timers, shortened like the others (defaults 5 and 10).
weight-smoothing = 2
slow-start = 2

[virtual-service]
name = web
address = 192.0.2.10
protocol = tcp
port = 80
scheduler = wrr

[virtual-service]
name = web-wlc
address = 192.0.2.20
protocol = tcp
port = 80
scheduler = wlc
max-weight = 200
CONF
  cat >"$e/agent.conf" <<'CONF'
director = 10.0.0.1
master-timeout = 10
loglevel = INFO
CONF
  echo 60 >"$e/rs3.health"
  chmod 644 "$e"/*
  if [ -n "$NETLINK" ]; then
    install -m755 "$NETLINK" "$r/usr/local/lib/e2e/realipvs.test"
  elif [ -n "$NETLINK_ERR" ]; then
    printf '%s\n' "$NETLINK_ERR" >"$r/usr/local/lib/e2e/realipvs.build-failed"
  fi
}

# install_scenarios ROOT: the guest side of the harness: the scenarios,
# run by the oneshot unit e2e-ipvs.service.
install_scenarios() {
  local r=$1
  install -d "$r/usr/local/lib/e2e"
  install -m755 "$GUEST/ipvs-scenarios.sh" "$r/usr/local/lib/e2e/scenarios.sh"
  install -m644 "$GUEST/lib.sh" "$r/usr/local/lib/e2e/lib.sh"
  install -m644 "$GUEST/net.sh" "$r/usr/local/lib/e2e/net.sh"
  install -m644 "$GUEST/ops-scenarios.sh" "$r/usr/local/lib/e2e/ops-scenarios.sh"
  install -m644 "$GUEST/vsopts-scenarios.sh" "$r/usr/local/lib/e2e/vsopts-scenarios.sh"
  install -m644 "$GUEST/agent-scenarios.sh" "$r/usr/local/lib/e2e/agent-scenarios.sh"
  vm_guest_unit "$r" e2e-ipvs "feedbackd IPVS end-to-end scenarios" /usr/local/lib/e2e/scenarios.sh 2100
}

WORK=$(mktemp -d /tmp/feedbackd-e2e-qemu.XXXXXX)
cleanup() {
  [ -z "$NETLINK" ] || rm -f "$NETLINK"
  vm_kill "$WORK"
  rm -rf "$WORK"
}
trap cleanup EXIT
R=$WORK/root

prepare_image() {
  vm_unpack_root "$R"
  stage_product "$R"
  install_scenarios "$R"
  vm_mkfs "$R" "$WORK/root.img" e2e-root
}
echo "=== preparing the root image (kernel $KVER)"
vm_timed "root image (untar, stage, mkfs)" prepare_image

# --- boot -------------------------------------------------------------------
# The VM writes into a share of its own under $WORK, copied to $OUT at the
# end: the nspawn tier (run.sh) empties test/e2e/out when it starts, which
# must not pull the directory from under a VM that is still running. Shown
# live: the progress lines of /init and of the scenarios (journald
# forwards those to the console behind a "[time] scenarios.sh[pid]: "
# prefix).
SHARE=$WORK/share
echo "=== booting Debian's kernel under QEMU TCG (software emulation: about a minute); progress:"
VM_SHOW_STATUS=1 VM_KERNEL=${E2E_QEMU_KERNEL:-vmlinux} \
  vm_boot "$WORK" "$WORK/root.img" 2 2048 "$VM_TIMEOUT" results.txt '^DONE' 'e2e-\(init\|ipvs\): .*'
vm_timing "VM (boot, scenarios, power-off)" "$VM_SECONDS"
rm -rf "$OUT"
mkdir -p "$OUT"
cp -a "$SHARE"/. "$WORK/console.txt" "$OUT/"

vm_tally e2e-ipvs "$OUT"
echo "report: test/e2e/out/ipvs/report.txt, console: test/e2e/out/ipvs/console.txt"
echo "e2e-ipvs: $VM_PASSED passed, $VM_FAILED failed"
[ "$VM_FAILED" = 0 ]
