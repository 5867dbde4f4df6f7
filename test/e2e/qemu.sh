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
CACHE=$TOP/.cache/e2e/qemu
OUT=$TOP/test/e2e/out/ipvs
VM_TIMEOUT=${E2E_QEMU_TIMEOUT:-2400}
MASTER_LOGLEVEL=${E2E_MASTER_LOGLEVEL:-INFO}
[ "$(id -u)" = 0 ] || { echo "e2e-ipvs: needs root (debootstrap, mkfs.ext4 -d of a root file system)" >&2; exit 1; }

T0=$(date +%s.%N)
TIMINGS=()
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
timed() { # timed LABEL CMD...: run CMD, record how long it took
  local label=$1 t
  shift
  t=$(now)
  "$@"
  TIMINGS+=("$(printf '%-36s %6s s' "$label" "$(elapsed "$t")")")
}

# --- host packages --------------------------------------------------------
host_packages() {
  local need=() c p
  for c in qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils depmod:kmod modprobe:kmod \
    cpio:cpio zstd:zstd xz:xz-utils mkfs.ext4:e2fsprogs debootstrap:debootstrap; do
    command -v "${c%%:*}" >/dev/null || need+=("${c#*:}")
  done
  # The initramfs needs a static busybox; the "busybox" package is dynamic.
  dpkg-query -W -f '${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need+=(busybox-static)
  [ ${#need[@]} -gt 0 ] || return 0
  echo "=== installing host packages: ${need[*]}"
  . "$TOP/test/readme/apt.sh" # apt-get that waits for the dpkg and apt locks
  apt_install "${need[@]}"
}
timed "host packages" host_packages

mkdir -p "$CACHE"
# One run at a time: the cache is shared, and two TCG VMs on two cores
# would only slow each other down.
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
  echo "=== waiting for another qemu.sh run to finish"
  flock 9
fi

key() { cat "$@" | sha256sum | cut -c1-12; }
prune() { # prune PATTERN KEEP: remove older cache entries of one kind
  local f
  for f in "$CACHE"/$1; do [ "$f" = "$2" ] || [ ! -e "$f" ] || rm -rf "$f"; done
}

# --- cached assets ----------------------------------------------------------
# Kernel: keyed on the linux-image-amd64 version apt would fetch now (a new
# kernel in the apt lists rebuilds it) and on the scripts that prepare it.
kernel_version=$(apt-cache show --no-all-versions linux-image-amd64 2>/dev/null | awk '/^Version:/ { print $2; exit }')
[ -n "$kernel_version" ] || { echo "e2e-ipvs: apt knows no linux-image-amd64 (apt-get update?)" >&2; exit 1; }
KDIR=$CACHE/kernel-$(key <(echo "$kernel_version") "$HELPERS/kernel.sh" "$HELPERS/extract-vmlinux.sh")
if [ ! -f "$KDIR/kver" ]; then
  echo "=== preparing Debian's kernel (linux-image-amd64 $kernel_version)"
  timed "kernel (download, extract, modules)" "$HELPERS/kernel.sh" "$KDIR.tmp"
  rm -rf "$KDIR"
  mv "$KDIR.tmp" "$KDIR"
  prune 'kernel-*' "$KDIR"
fi
KVER=$(cat "$KDIR/kver")

INITRD=$CACHE/initrd-$(key <(echo "$KDIR") <(dpkg-query -W -f '${Version}' busybox-static) \
  "$HELPERS/initramfs.sh" "$HELPERS/init").gz
if [ ! -f "$INITRD" ]; then
  echo "=== building the initramfs"
  timed "initramfs" "$HELPERS/initramfs.sh" "$KDIR" "$INITRD"
  prune 'initrd-*' "$INITRD"
fi

# curl and jq: the ops scenarios scrape the metrics and read feedbackctl --json.
ROOT_PACKAGES=systemd,systemd-sysv,dbus,udev,kmod,ipvsadm,iproute2,procps,perl-base,curl,jq
ROOTFS=$CACHE/rootfs-$(key <(echo "bookworm $ROOT_PACKAGES") "$HELPERS/rootfs.sh").tar
if [ ! -f "$ROOTFS" ]; then
  echo "=== building the Debian 12 root with debootstrap (about a minute)"
  timed "root file system (debootstrap)" "$HELPERS/rootfs.sh" "$ROOTFS" "$ROOT_PACKAGES"
  prune 'rootfs-*.tar' "$ROOTFS"
fi

# --- the product ------------------------------------------------------------
echo "=== building"
rm -f dist/*.deb
timed "make package" make -s package
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
timed "realipvs test binary" build_netlink

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

# install_scenarios ROOT: the guest side of the harness: scenarios, the
# oneshot unit that runs them and powers off, the 9p results share, a
# quiet console.
install_scenarios() {
  local r=$1 u=$1/etc/systemd/system
  install -d "$r/usr/local/lib/e2e" "$r/mnt/out"
  install -m755 "$GUEST/ipvs-scenarios.sh" "$r/usr/local/lib/e2e/scenarios.sh"
  install -m644 "$GUEST/lib.sh" "$r/usr/local/lib/e2e/lib.sh"
  install -m644 "$GUEST/ops-scenarios.sh" "$r/usr/local/lib/e2e/ops-scenarios.sh"
  cat >"$u/e2e-ipvs.service" <<'UNIT'
[Unit]
Description=feedbackd IPVS end-to-end scenarios
# Start once the system is up (not in the boot transaction's way). Never
# call "systemctl is-system-running --wait" from here: this job itself
# keeps the system "starting", so it would wait forever.
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/usr/local/lib/e2e/scenarios.sh
# Power off however the script ends, killed at the timeout included.
ExecStopPost=/bin/systemctl --no-block poweroff
TimeoutStartSec=2100
StandardOutput=journal+console
StandardError=journal+console
[Install]
WantedBy=multi-user.target
UNIT
  mkdir -p "$u/multi-user.target.wants"
  ln -sf ../e2e-ipvs.service "$u/multi-user.target.wants/e2e-ipvs.service"
  echo 'host /mnt/out 9p trans=virtio,version=9p2000.L,msize=512000,nofail 0 0' >>"$r/etc/fstab"
  # No login prompts; no periodic maintenance jobs competing for the CPU.
  local m
  for m in serial-getty@ttyS0.service console-getty.service getty@tty1.service \
    apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
    e2scrub_reap.service fstrim.timer; do
    ln -sf /dev/null "$u/$m"
  done
  echo e2e-ipvs >"$r/etc/hostname"
}

WORK=$(mktemp -d /tmp/feedbackd-e2e-qemu.XXXXXX)
cleanup() {
  [ -z "$NETLINK" ] || rm -f "$NETLINK"
  # QEMU runs under timeout(1) in a process group of its own, which a ^C
  # on the terminal does not reach.
  [ ! -f "$WORK/qemu.pid" ] || kill -TERM "$(cat "$WORK/qemu.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
R=$WORK/root

prepare_image() {
  mkdir "$R"
  tar -C "$R" -xf "$ROOTFS"
  # The module tree of the kernel the VM boots (depmod already run).
  mkdir -p "$R/usr/lib/modules"
  cp -a "$KDIR/modules/lib/modules/$KVER" "$R/usr/lib/modules/"
  stage_product "$R"
  install_scenarios "$R"
  truncate -s 2G "$WORK/root.img"
  mkfs.ext4 -q -F -L e2e-root -d "$R" "$WORK/root.img"
  rm -rf "$R"
}
echo "=== preparing the root image (kernel $KVER)"
timed "root image (untar, stage, mkfs)" prepare_image

# --- boot -------------------------------------------------------------------
# The VM writes into a share of its own under $WORK, copied to $OUT at the
# end: the nspawn tier (run.sh) empties test/e2e/out when it starts, which
# must not pull the directory from under a VM that is still running.
SHARE=$WORK/share
mkdir -m 755 "$SHARE"
KERNEL=$KDIR/${E2E_QEMU_KERNEL:-vmlinux}
echo "=== booting Debian's kernel under QEMU TCG (software emulation: about a minute); progress:"
t=$(now)
# QEMU runs in the background so that this script can watch the results:
# once the guest has written DONE it has POWEROFF_GRACE seconds to power
# off, then QEMU is stopped, so that a shutdown hanging under emulation
# does not cost the whole VM timeout. The serial console goes to stdout:
# CRs dropped, kept in console.txt, and the progress lines of /init and of
# the scenarios (journald forwards those to the console behind a
# "[time] scenarios.sh[pid]: " prefix) shown live.
POWEROFF_GRACE=60
{
  timeout -k 10 "$VM_TIMEOUT" qemu-system-x86_64 \
    -accel tcg,thread=multi -smp 2 -m 2048 -nographic -no-reboot -nic none \
    -kernel "$KERNEL" -initrd "$INITRD" \
    -append "console=ttyS0 e2e.root=/dev/vda panic=-1 quiet systemd.show_status=1" \
    -drive "file=$WORK/root.img,if=virtio,format=raw,cache=unsafe" \
    -virtfs "local,path=$SHARE,mount_tag=host,security_model=none,id=host" \
    </dev/null 2>&1 &
  echo $! >"$WORK/qemu.pid"
  wait $!
  echo $? >"$WORK/qemu.rc"
} | stdbuf -o0 tr -d '\r' | tee "$WORK/console.txt" | grep --line-buffered -a -o 'e2e-\(init\|ipvs\): .*' &
console=$!
done_at= stuck=no
while kill -0 "$console" 2>/dev/null; do
  if [ -z "$done_at" ] && grep -q '^DONE' "$SHARE/results.txt" 2>/dev/null; then done_at=$SECONDS; fi
  if [ -n "$done_at" ] && [ "$stuck" = no ] && [ $((SECONDS - done_at)) -ge $POWEROFF_GRACE ]; then
    stuck=yes
    echo "e2e-ipvs: the guest finished its scenarios but did not power off within ${POWEROFF_GRACE} s; stopping QEMU" >&2
    kill -TERM "$(cat "$WORK/qemu.pid")" 2>/dev/null || true
  fi
  sleep 1
done
wait "$console" || true
rc=$(cat "$WORK/qemu.rc" 2>/dev/null || echo '?')
vm_s=$(elapsed "$t")
TIMINGS+=("$(printf '%-36s %6s s' "VM (boot, scenarios, power-off)" "$vm_s")")
[ "$rc" = 124 ] && echo "e2e-ipvs: the VM was killed after ${VM_TIMEOUT} s" >&2
rm -rf "$OUT"
mkdir -p "$OUT"
cp -a "$SHARE"/. "$WORK/console.txt" "$OUT/"

echo
cat "$OUT/report.txt" 2>/dev/null || true
echo
passed=$(grep -c '^PASS' "$OUT/results.txt" 2>/dev/null || true)
failed=$(grep -c '^FAIL' "$OUT/results.txt" 2>/dev/null || true)
passed=${passed:-0} failed=${failed:-0}
finished=yes
if ! grep -q '^DONE' "$OUT/results.txt" 2>/dev/null; then
  finished=no
  echo "e2e-ipvs: the guest did not finish its scenarios (qemu rc=$rc); console tail:" >&2
  tail -40 "$OUT/console.txt" >&2
  failed=$((failed + 1))
elif [ "$stuck" = yes ]; then
  echo "e2e-ipvs: warning: the guest hung while powering off (not counted as a failure); console tail:" >&2
  tail -40 "$OUT/console.txt" >&2
fi
# Guest-side figures: uptime when the scenarios started (~ boot to
# multi-user) and how long the scenarios took.
boot_s=$(awk -F= '$1 == "boot_s" { print $2 }' "$OUT/timings.txt" 2>/dev/null || true)
scen_s=$(awk -F= '$1 == "scenarios_s" { print $2 }' "$OUT/timings.txt" 2>/dev/null || true)
TIMINGS+=("$(printf '%-36s %6s s' "  guest boot to scenarios start" "${boot_s:-?}")")
TIMINGS+=("$(printf '%-36s %6s s' "  guest scenarios" "${scen_s:-?}")")
while IFS='=' read -r k v; do
  case $k in scenario_*_s) k=${k#scenario_}; TIMINGS+=("$(printf '%-36s %6s s' "    ${k%_s}" "$v")") ;; esac
done < <(cat "$OUT/timings.txt" 2>/dev/null)
TIMINGS+=("$(printf '%-36s %6s s' "total" "$(elapsed "$T0")")")
{
  echo "timings (kernel $KVER):"
  printf '  %s\n' "${TIMINGS[@]}"
} | tee "$OUT/timings-host.txt"
echo "report: test/e2e/out/ipvs/report.txt, console: test/e2e/out/ipvs/console.txt"
[ "$finished" = yes ] || echo "e2e-ipvs: (one failure counted for the unfinished guest)"
echo "e2e-ipvs: $passed passed, $failed failed"
[ "$failed" = 0 ]
