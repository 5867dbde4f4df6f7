# The host side of a QEMU run, shared by the e2e IPVS tier
# (test/e2e/qemu.sh) and the load experiment (test/experiment/run.sh):
# the per-checkout lock, the cached kernel, initramfs and Debian root,
# the guest's oneshot unit, the root image, and the boot with its console
# watch. Sourced, not run; the caller sets TOP (the checkout) and has
# `set -euo pipefail`. Functions report through the globals they name.
#
# Why one library: both boot the same kernel the same way, and when only
# one of them learned something (the lock, the power-off grace, the
# masked timers) the other went on without it.

VM_HELPERS=$TOP/test/e2e/qemu
VM_CACHE=$TOP/.cache/e2e/qemu
# The Debian root's packages, one list for every caller: the cache keeps
# one root, so a caller with a list of its own would rebuild and prune
# the other's. curl and jq: the e2e ops scenarios scrape the metrics and
# read feedbackctl --json; nftables: the vsopts scenarios mark packets.
VM_ROOT_PACKAGES=systemd,systemd-sysv,dbus,udev,kmod,ipvsadm,iproute2,procps,perl-base,curl,jq,nftables

. "$TOP/test/readme/apt.sh" # apt-get that waits for the dpkg and apt locks

# vm_host_packages [CMD:PKG]...: install what QEMU runs need on the host,
# plus the callers' own (a command and the package that brings it).
vm_host_packages() {
  local need=() c
  for c in qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils depmod:kmod modprobe:kmod \
    cpio:cpio zstd:zstd xz:xz-utils mkfs.ext4:e2fsprogs debootstrap:debootstrap flock:util-linux "$@"; do
    command -v "${c%%:*}" >/dev/null || need+=("${c#*:}")
  done
  # The initramfs needs a static busybox; the "busybox" package is dynamic.
  dpkg-query -W -f '${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need+=(busybox-static)
  [ ${#need[@]} -gt 0 ] || return 0
  echo "=== installing host packages: ${need[*]}"
  apt_install "${need[@]}"
}

# vm_lock WAIT_S: one QEMU run at a time per checkout, on fd 9. The cache
# is shared, and two TCG VMs on two cores would only slow each other
# down (and change every figure of the experiment). Fails after WAIT_S.
vm_lock() {
  mkdir -p "$VM_CACHE"
  exec 9>"$VM_CACHE/.lock"
  if ! flock -n 9; then
    echo "=== $(date -u +%H:%M:%SZ): waiting (up to $1 s) for another QEMU run of this checkout to release $VM_CACHE/.lock"
    flock -w "$1" 9 || { echo "the QEMU lock $VM_CACHE/.lock was not released within $1 s" >&2; return 1; }
  fi
}
vm_unlock() { flock -u 9; }

vm_key() { cat "$@" | sha256sum | cut -c1-12; }
vm_prune() { # vm_prune PATTERN KEEP: remove older cache entries of one kind
  local f
  for f in "$VM_CACHE"/$1; do [ "$f" = "$2" ] || [ ! -e "$f" ] || rm -rf "$f"; done
}

# vm_assets [TIMED]: the cached Debian kernel, initramfs and
# debootstrap root, each keyed on its inputs and made when missing. Sets
# KDIR, KVER, INITRD and ROOTFS. TIMED, when given, is a command that
# wraps each build step with a label (qemu.sh records timings).
vm_assets() {
  local pkgs=$VM_ROOT_PACKAGES timed=${1:-} kernel_version
  # Keyed on the linux-image-amd64 version apt would fetch now (a new
  # kernel in the apt lists rebuilds it) and on the scripts that prepare it.
  kernel_version=$(apt-cache show --no-all-versions linux-image-amd64 2>/dev/null | awk '/^Version:/ { print $2; exit }')
  [ -n "$kernel_version" ] || { echo "apt knows no linux-image-amd64 (apt-get update?)" >&2; return 1; }
  KDIR=$VM_CACHE/kernel-$(vm_key <(echo "$kernel_version") "$VM_HELPERS/kernel.sh" "$VM_HELPERS/extract-vmlinux.sh")
  if [ ! -f "$KDIR/kver" ]; then
    echo "=== preparing Debian's kernel (linux-image-amd64 $kernel_version)"
    rm -rf "$KDIR.tmp"
    ${timed:+$timed "kernel (download, extract, modules)"} "$VM_HELPERS/kernel.sh" "$KDIR.tmp"
    rm -rf "$KDIR"
    mv "$KDIR.tmp" "$KDIR"
    vm_prune 'kernel-*' "$KDIR"
  fi
  KVER=$(cat "$KDIR/kver")
  INITRD=$VM_CACHE/initrd-$(vm_key <(echo "$KDIR") <(dpkg-query -W -f '${Version}' busybox-static) \
    "$VM_HELPERS/initramfs.sh" "$VM_HELPERS/init").gz
  if [ ! -f "$INITRD" ]; then
    echo "=== building the initramfs"
    ${timed:+$timed "initramfs"} "$VM_HELPERS/initramfs.sh" "$KDIR" "$INITRD"
    vm_prune 'initrd-*' "$INITRD"
  fi
  ROOTFS=$VM_CACHE/rootfs-$(vm_key <(echo "bookworm $pkgs") "$VM_HELPERS/rootfs.sh").tar
  if [ ! -f "$ROOTFS" ]; then
    echo "=== building the Debian 12 root with debootstrap (about a minute)"
    ${timed:+$timed "root file system (debootstrap)"} "$VM_HELPERS/rootfs.sh" "$ROOTFS" "$pkgs"
    vm_prune 'rootfs-*.tar' "$ROOTFS"
  fi
}

# vm_unpack_root DIR: the cached root and the module tree of the kernel
# the VM boots (depmod already run) in DIR.
vm_unpack_root() {
  mkdir "$1"
  tar -C "$1" -xf "$ROOTFS"
  mkdir -p "$1/usr/lib/modules"
  cp -a "$KDIR/modules/lib/modules/$KVER" "$1/usr/lib/modules/"
}

# vm_guest_unit ROOT NAME DESCRIPTION EXEC TIMEOUT_S: the guest's job, an
# auto-started oneshot unit that powers the VM off however it ends; the
# 9p results share at /mnt/out; no login prompts and no periodic
# maintenance jobs competing for the CPU; hostname NAME.
vm_guest_unit() {
  local r=$1 name=$2 desc=$3 exec=$4 timeout=$5 u=$1/etc/systemd/system m
  install -d "$u/multi-user.target.wants" "$r/mnt/out"
  cat >"$u/$name.service" <<UNIT
[Unit]
Description=$desc
# Start once the system is up (not in the boot transaction's way). Never
# call "systemctl is-system-running --wait" from here: this job itself
# keeps the system "starting", so it would wait forever.
After=multi-user.target
[Service]
Type=oneshot
ExecStart=$exec
# Power off however the job ends, killed at the timeout included.
ExecStopPost=/bin/systemctl --no-block poweroff
TimeoutStartSec=$timeout
StandardOutput=journal+console
StandardError=journal+console
[Install]
WantedBy=multi-user.target
UNIT
  ln -sf "../$name.service" "$u/multi-user.target.wants/$name.service"
  echo 'host /mnt/out 9p trans=virtio,version=9p2000.L,msize=512000,nofail 0 0' >>"$r/etc/fstab"
  for m in serial-getty@ttyS0.service console-getty.service getty@tty1.service \
    apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
    e2scrub_reap.service fstrim.timer man-db.timer logrotate.timer; do
    ln -sf /dev/null "$u/$m"
  done
  echo "$name" >"$r/etc/hostname"
}

# vm_mkfs ROOT IMAGE LABEL: a 2 GiB ext4 image made of ROOT, which is
# then removed.
vm_mkfs() {
  truncate -s 2G "$2"
  mkfs.ext4 -q -F -L "$3" -d "$1" "$2"
  rm -rf "$1"
}

# vm_boot WORK IMAGE SMP MEM_MIB TIMEOUT_S DONE_FILE DONE_RE SHOW_RE [TICK]: boot
# KDIR's kernel with INITRD under QEMU TCG (-accel tcg,thread=multi: the
# development machines' /dev/kvm is kvm_pvm, which cannot run a Debian
# kernel), with WORK/share as the guest's 9p share. QEMU runs in the
# background so that this can watch: the serial console goes to
# WORK/console.txt (CRs dropped) and its lines matching SHOW_RE are shown
# live. Once DONE_FILE (in the share) has a line matching DONE_RE the guest has
# VM_POWEROFF_GRACE seconds (60) to power off, then QEMU is stopped, so
# that a shutdown hanging under emulation does not cost the whole
# timeout. TICK, when given, runs once a second while the VM runs. Sets
# VM_RC (QEMU's exit status, 124 when killed at the timeout), VM_STUCK
# (yes when QEMU had to be stopped) and VM_SECONDS.
vm_boot() {
  local work=$1 image=$2 smp=$3 mem=$4 timeout=$5 donefile=$6 donere=$7 show=$8 tickfn=${9:-} console done_at= t0=$SECONDS
  local append="console=ttyS0 e2e.root=/dev/vda panic=-1 quiet systemd.show_status=${VM_SHOW_STATUS:-0}"
  VM_STUCK=no
  mkdir -p -m 755 "$work/share"
  {
    timeout -k 10 "$timeout" qemu-system-x86_64 \
      -accel tcg,thread=multi -smp "$smp" -m "$mem" -nographic -no-reboot -nic none \
      -kernel "$KDIR/${VM_KERNEL:-vmlinux}" -initrd "$INITRD" -append "$append" \
      -drive "file=$image,if=virtio,format=raw,cache=unsafe" \
      -virtfs "local,path=$work/share,mount_tag=host,security_model=none,id=host" \
      </dev/null 2>&1 &
    echo $! >"$work/qemu.pid"
    wait $!
    echo $? >"$work/qemu.rc"
  } | stdbuf -o0 tr -d '\r' | tee "$work/console.txt" | grep --line-buffered -a -o "$show" &
  console=$!
  while kill -0 "$console" 2>/dev/null; do
    [ -z "$tickfn" ] || "$tickfn"
    if [ -z "$done_at" ] && grep -q -- "$donere" "$work/share/$donefile" 2>/dev/null; then done_at=$SECONDS; fi
    if [ -n "$done_at" ] && [ "$VM_STUCK" = no ] && [ $((SECONDS - done_at)) -ge "${VM_POWEROFF_GRACE:-60}" ]; then
      VM_STUCK=yes
      echo "the guest finished but did not power off within ${VM_POWEROFF_GRACE:-60} s; stopping QEMU" >&2
      kill -TERM "$(cat "$work/qemu.pid")" 2>/dev/null || true
    fi
    sleep 1
  done
  wait "$console" || true
  VM_RC=$(cat "$work/qemu.rc" 2>/dev/null || echo '?')
  VM_SECONDS=$((SECONDS - t0))
  [ "$VM_RC" != 124 ] || echo "the VM was killed after $timeout s" >&2
}

# vm_keepalived ROOT LOG: Debian's keepalived installed into the unpacked
# root as an operator installs it. The packages apt picks for this root
# (its own dpkg status) are downloaded once per root image into the cache;
# apt-get installs them in a chroot, with policy-rc.d keeping the
# maintainer scripts from starting anything, and the packaged
# keepalived.service stays disabled (each guest starts keepalived its own
# way). apt-get's output goes to LOG. Prints keepalived's version line.
vm_keepalived() {
  local r=$1 log=$2 debs
  debs=$VM_CACHE/keepalived-debs-$(basename "$ROOTFS" .tar)
  if [ ! -f "$debs/.complete" ]; then
    echo "=== downloading keepalived and what it needs for this root"
    # Each step checked by hand: errexit is off inside a function
    # called in a condition.
    rm -rf "$debs" && mkdir -p "$debs/partial" || return 1
    apt-cache policy keepalived 2>/dev/null | grep -q 'Candidate: [^(]' || apt_get update -q || return 1
    apt_get -o Dir::State::status="$r/var/lib/dpkg/status" -o Dir::Cache::archives="$debs" \
      install --download-only -y -q --no-install-recommends keepalived || return 1
    ls "$debs"/keepalived_*.deb >/dev/null || return 1
    touch "$debs/.complete"
  fi
  echo "=== installing keepalived into the root image"
  mkdir -p "$r/tmp/ka-debs" && cp "$debs"/*.deb "$r/tmp/ka-debs/" || return 1
  printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d" && chmod 755 "$r/usr/sbin/policy-rc.d" || return 1
  chroot "$r" sh -c 'DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends /tmp/ka-debs/*.deb' \
    >"$log" 2>&1 || { tail -20 "$log" >&2; return 1; }
  chroot "$r" systemctl disable -q keepalived.service || return 1
  rm -rf "$r/usr/sbin/policy-rc.d" "$r/tmp/ka-debs"
  # (sed, not head: head's early exit would kill keepalived with SIGPIPE,
  # and pipefail the caller.)
  chroot "$r" keepalived --version 2>&1 | sed -n 1p
}

# vm_kill WORK: stop a QEMU still running (for an EXIT trap: QEMU runs
# under timeout(1) in a process group of its own, which a ^C on the
# terminal does not reach).
vm_kill() { [ ! -f "$1/qemu.pid" ] || kill -TERM "$(cat "$1/qemu.pid")" 2>/dev/null || true; }

# Timings of a host script: vm_timed LABEL CMD... runs CMD in this shell
# and records how long it took in VM_TIMINGS; vm_timing LABEL SECONDS
# records a figure measured elsewhere.
VM_T0=$(date +%s.%N)
VM_TIMINGS=()
vm_now() { date +%s.%N; }
vm_elapsed() { awk -v a="$1" -v b="$(vm_now)" 'BEGIN { printf "%.1f", b - a }'; }
vm_timing() { VM_TIMINGS+=("$(printf '%-36s %6s s' "$1" "$2")"); }
vm_timed() {
  local label=$1 t
  shift
  t=$(vm_now)
  "$@"
  vm_timing "$label" "$(vm_elapsed "$t")"
}

# vm_tally NAME OUT: after a guest of the e2e kind (lib.sh: results.txt
# with PASS/FAIL lines and DONE, timings.txt) has written OUT: print its
# report, count its results into VM_PASSED and VM_FAILED (one failure more
# when it did not finish), and print and keep (OUT/timings-host.txt) the
# timings with the guest's own.
vm_tally() {
  local name=$1 out=$2 k v boot_s scen_s
  echo
  cat "$out/report.txt" 2>/dev/null || true
  echo
  VM_PASSED=$(grep -c '^PASS' "$out/results.txt" 2>/dev/null || true)
  VM_FAILED=$(grep -c '^FAIL' "$out/results.txt" 2>/dev/null || true)
  VM_PASSED=${VM_PASSED:-0} VM_FAILED=${VM_FAILED:-0}
  if ! grep -q '^DONE' "$out/results.txt" 2>/dev/null; then
    echo "$name: the guest did not finish its scenarios (qemu rc=$VM_RC); console tail:" >&2
    tail -40 "$out/console.txt" >&2
    echo "$name: (one failure counted for the unfinished guest)" >&2
    VM_FAILED=$((VM_FAILED + 1))
  elif [ "$VM_STUCK" = yes ]; then
    echo "$name: warning: the guest hung while powering off (not counted as a failure); console tail:" >&2
    tail -40 "$out/console.txt" >&2
  fi
  # Guest-side figures: uptime when the scenarios started (~ boot to
  # multi-user) and how long the scenarios took.
  boot_s=$(awk -F= '$1 == "boot_s" { print $2 }' "$out/timings.txt" 2>/dev/null || true)
  scen_s=$(awk -F= '$1 == "scenarios_s" { print $2 }' "$out/timings.txt" 2>/dev/null || true)
  vm_timing "  guest boot to scenarios start" "${boot_s:-?}"
  vm_timing "  guest scenarios" "${scen_s:-?}"
  while IFS='=' read -r k v; do
    case $k in scenario_*_s) k=${k#scenario_}; vm_timing "    ${k%_s}" "$v" ;; esac
  done < <(cat "$out/timings.txt" 2>/dev/null)
  vm_timing "total" "$(vm_elapsed "$VM_T0")"
  {
    echo "timings (kernel $KVER):"
    printf '  %s\n' "${VM_TIMINGS[@]}"
  } | tee "$out/timings-host.txt"
}
