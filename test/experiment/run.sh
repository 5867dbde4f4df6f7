#!/bin/bash
# make experiment: the load-balancing experiment on a real kernel. Needs
# root. Not part of make test, make e2e or CI: it takes about 45 minutes.
#
# Boots Debian 12's kernel under QEMU (TCG only, as the e2e IPVS tier
# does) with systemd as PID 1, three realservers in network namespaces,
# each in a systemd slice with its own CPU budget, LVS-DR through a VIP,
# and a client namespace sending an open-loop load; midway a CPU hog
# starts in rs3's slice. Two scenarios, each run once per arm with the
# same arrivals: "hog" (the hog runs to the end) and "recovery" (it stops
# again). The arms: equal static wrr weights; feedbackd with
# weight-law = direct (as it was); feedbackd with the smoothed law
# (weight-smoothing 5 s, slow-start 10 s, the defaults of a30d42f, and
# weight-smoothing 10 s); Debian's keepalived with a MISC_CHECK
# misc_dynamic script (cgroup-health.sh) reporting the same cgroup CPU
# health. The guest side is guest.sh; see docs/experiment.md for the
# method and the results.
#
# The QEMU plumbing (lock, cached kernel, initramfs and Debian root, the
# guest unit, the boot) is test/e2e/qemu/vm.sh, shared with make
# e2e-ipvs: the same assets in .cache/e2e/qemu, and the same per-checkout
# lock, so that two VMs of this checkout never share the two cores.
# keepalived and the packages it needs are downloaded once (apt-get
# --download-only against the root's own dpkg status, into
# .cache/experiment) and installed into the root image with apt-get in a
# chroot.

# feedbackd itself is built from the last commit (git archive HEAD), not
# from the working tree; the experiment's own tools from this directory.
#
# Output in test/experiment/out/UTC-TIMESTAMP (out/latest points to the
# newest): results.md (the tables), summary.tsv (the same figures, one
# line per run and window), latency-SCENARIO.png, the raw CSVs, the
# guest's evidence and journal, console.txt, and hostload.txt (the host's
# load and other QEMU processes, every 10 s). Then out/combined.md, the
# range of every figure over all invocations in out/.
#
# Environment: EXP_ARMS (default "static direct smoothed-5s keepalived
# smoothed-10s", run in that order), EXP_SCENARIOS ("hog recovery"),
# EXP_RATE (requests/s; by default set from a warm-up at EXP_WARM_RATE,
# 8, so that each realserver is EXP_UTIL_PCT, 45 %, busy before the hog:
# guest.sh says why), EXP_HOG_AT (s, 60), EXP_HOG_DURATION (s, the
# hog scenario's length, 150), EXP_REC_HOG_STOP (s, 120) and
# EXP_REC_DURATION (180) for the recovery scenario, EXP_SEED (1),
# EXP_QUOTA (each realserver's CPUQuota=, 25%), EXP_WORK_MS (CPU ms per
# request, 8), EXP_SMP (2), EXP_MEM (MiB, 1536), EXP_AGENT_INTERVAL (the
# agents' interval and keepalived's delay_loop, 2), EXP_SLOW_START (the
# smoothed arms' slow-start, 10), EXP_LOCK_WAIT (s to wait for the e2e
# lock, 3600), EXP_OTHER_QEMU_WAIT (s to wait before booting while
# another checkout's VM runs, 900), EXP_QUIET_WAIT (s the guest waits
# before a run while one runs, 600), EXP_RETRIES (runs repeated in all
# because one ran during them, 4), EXP_TIMEOUT (s for the whole VM;
# default from the plan).
set -euo pipefail
cd "$(dirname "$0")/../.."
TOP=$PWD
HERE=$TOP/test/experiment
CACHE=$TOP/.cache/experiment
OUT=$HERE/out/$(date -u +%Y%m%dT%H%M%SZ)
[ "$(id -u)" = 0 ] || { echo "experiment: needs root (mkfs.ext4 -d of a root file system, chroot)" >&2; exit 1; }
T0=$SECONDS
ARMS=${EXP_ARMS:-static direct smoothed-5s keepalived smoothed-10s}
SCENARIOS=${EXP_SCENARIOS:-hog recovery}
HOG_AT=${EXP_HOG_AT:-60}
HOG_DURATION=${EXP_HOG_DURATION:-150}
REC_HOG_STOP=${EXP_REC_HOG_STOP:-120}
REC_DURATION=${EXP_REC_DURATION:-180}
for a in $ARMS; do
  case $a in static | direct | smoothed-5s | smoothed-10s | keepalived) ;; *)
    echo "experiment: unknown arm $a in EXP_ARMS" >&2
    exit 2
    ;;
  esac
done
for c in $SCENARIOS; do
  case $c in hog | recovery) ;; *)
    echo "experiment: unknown scenario $c in EXP_SCENARIOS" >&2
    exit 2
    ;;
  esac
done
# The VM's budget: each run's load plus two minutes to start and stop
# servers, agents, master or keepalived under emulation, plus ten minutes
# for the boot and calibration, plus what waiting for other VMs and
# repeating disturbed runs may take (guest.sh: RETRIES runs of at most
# 300 s, QUIET_WAIT for each wait).
retries=${EXP_RETRIES:-4}
quiet_wait=${EXP_QUIET_WAIT:-600}
budget=$((600 + retries * 300 + (retries + 2) * quiet_wait))
narms=$(wc -w <<<"$ARMS")
for c in $SCENARIOS; do
  d=$HOG_DURATION
  [ "$c" = hog ] || d=$REC_DURATION
  budget=$((budget + narms * (d + 120)))
done
VM_TIMEOUT=${EXP_TIMEOUT:-$budget}

. "$TOP/test/e2e/qemu/vm.sh" # the QEMU plumbing, shared with make e2e-ipvs
vm_host_packages gnuplot:gnuplot-nox

WORK=$(mktemp -d /tmp/feedbackd-experiment.XXXXXX)
cleanup() {
  vm_kill "$WORK"
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- build ------------------------------------------------------------------
echo "=== building feedbackd from $(git rev-parse --short HEAD) and the experiment's tools"
mkdir "$WORK/src" "$WORK/bin"
git archive HEAD | tar -x -C "$WORK/src"
(cd "$WORK/src" && for b in feedbackd-master feedbackd-agent; do
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$WORK/bin/$b" ./cmd/$b || exit 1
done)
for b in cpuhttp loadgen; do
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$WORK/bin/$b" ./test/experiment/cmd/$b
done
go build -o "$WORK/bin/expreport" ./test/experiment/cmd/expreport

# --- assets -----------------------------------------------------------------
mkdir -p "$CACHE"
vm_lock "${EXP_LOCK_WAIT:-3600}"
echo "=== $(date -u +%H:%M:%SZ): holding $VM_CACHE/.lock"
vm_assets
echo "=== assets: $(basename "$KDIR") ($KVER), $(basename "$INITRD"), $(basename "$ROOTFS")"

# --- root image -------------------------------------------------------------
R=$WORK/root
vm_unpack_root "$R"
# feedbackd as the packages install it: binaries, the units unchanged,
# the modules-load.d file (a minimal equivalent of installing the .debs).
install -m755 "$WORK/bin/feedbackd-master" "$WORK/bin/feedbackd-agent" "$R/usr/sbin/"
install -d "$R/usr/lib/systemd/system" "$R/usr/lib/modules-load.d" "$R/etc/feedbackd/agent.d"
install -m644 "$WORK/src/systemd/feedbackd-master.service" "$WORK/src/systemd/feedbackd-master.socket" \
  "$WORK/src/systemd/feedbackd-agent@.service" "$R/usr/lib/systemd/system/"
install -m644 "$WORK/src/systemd/lvs-feedbackd.conf" "$R/usr/lib/modules-load.d/"
# The experiment.
L=$R/usr/local/lib/experiment
install -d "$L" "$R/mnt/out"
install -m755 "$WORK/bin/cpuhttp" "$WORK/bin/loadgen" "$L/"
install -m755 "$HERE/guest.sh" "$L/guest.sh"
install -m644 "$TOP/test/e2e/guest/net.sh" "$L/net.sh"
install -m755 "$HERE/cgroup-health.sh" "$L/cgroup-health.sh"
# keepalived from Debian, as an operator installs it (vm.sh); its unit
# stays disabled, so that it runs only when the keepalived arm starts it.
vm_keepalived "$R" "$WORK/keepalived-install.txt" || exit 1
cat >"$WORK/params" <<PARAMS
RATE=${EXP_RATE:-}
WARM_RATE=${EXP_WARM_RATE:-8}
UTIL_PCT=${EXP_UTIL_PCT:-45}
ARMS="$ARMS"
SCENARIOS="$SCENARIOS"
HOG_AT=$HOG_AT
HOG_DURATION=$HOG_DURATION
REC_HOG_STOP=$REC_HOG_STOP
REC_DURATION=$REC_DURATION
SLOW_START=${EXP_SLOW_START:-10}
SEED=${EXP_SEED:-1}
QUOTA=${EXP_QUOTA:-25%}
QUOTA_PERIOD=20ms
WORK_MS=${EXP_WORK_MS:-8}
TIMEOUT=10
HOG_WEIGHT=400
HOG_THREADS=2
AGENT_INTERVAL=${EXP_AGENT_INTERVAL:-2}
RETRIES=$retries
QUIET_WAIT=$quiet_wait
PARAMS
install -m644 "$WORK/params" "$L/params"
vm_guest_unit "$R" experiment "feedbackd load-balancing experiment" /usr/local/lib/experiment/guest.sh $((VM_TIMEOUT - 60))
vm_mkfs "$R" "$WORK/root.img" exp-root

# --- boot -------------------------------------------------------------------
# The lock keeps out this checkout's VMs, not another checkout's, and a
# second VM on the same two cores changes every figure (the calibration
# and the warm-up most). Wait for one to end, up to EXP_OTHER_QEMU_WAIT
# seconds (900); after that go on: hostload.txt records it.
other_wait=${EXP_OTHER_QEMU_WAIT:-900}
if pgrep -x qemu-system-x86 >/dev/null; then
  echo "=== $(date -u +%H:%M:%SZ): another QEMU is running (another checkout's); waiting up to $other_wait s for it to end"
  end=$((SECONDS + other_wait))
  while pgrep -x qemu-system-x86 >/dev/null && [ $SECONDS -lt $end ]; do sleep 5; done
  pgrep -x qemu-system-x86 >/dev/null && echo "experiment: WARNING: another QEMU still runs; booting anyway" >&2
fi
SHARE=$WORK/share
echo "=== $(date -u +%H:%M:%SZ): booting under QEMU TCG (-smp ${EXP_SMP:-2}, ${EXP_MEM:-1536} MiB); arms: $ARMS; scenarios: $SCENARIOS; at most $VM_TIMEOUT s"
# Every 10 s the host's load and the number of other QEMU processes go to
# hostload.txt: the lock keeps out this checkout's VMs, not another
# checkout's, and a second VM on the same cores changes every figure.
# Every second, while another QEMU runs, share/other-qemu exists and a
# line is added to share/other-qemu.log: the guest waits for the file to
# go before each run and repeats a run during which the log grew.
tick=0
echo "# unix_s loadavg1 other_qemu_processes" >"$WORK/hostload.txt"
watch_host() {
  local others
  tick=$((tick + 1))
  others=$(($(pgrep -c -x qemu-system-x86 || true) - 1))
  if [ "$others" -gt 0 ]; then
    : >"$SHARE/other-qemu"
    echo "$(date +%s) $others" >>"$SHARE/other-qemu.log"
  else
    rm -f "$SHARE/other-qemu"
  fi
  if [ $((tick % 10)) = 1 ]; then
    echo "$(date +%s) $(cut -d' ' -f1 /proc/loadavg) $others" >>"$WORK/hostload.txt"
  fi
}
vm_boot "$WORK" "$WORK/root.img" "${EXP_SMP:-2}" "${EXP_MEM:-1536}" "$VM_TIMEOUT" status.txt . 'e2e-init: .*\|experiment: .*' watch_host
vm_unlock
echo "=== $(date -u +%H:%M:%SZ): released $VM_CACHE/.lock"
mkdir -p "$OUT"
ln -sfn "$(basename "$OUT")" "$HERE/out/latest"
rm -f "$SHARE/other-qemu"
cp -a "$SHARE"/. "$WORK/console.txt" "$WORK/params" "$WORK/hostload.txt" "$WORK/keepalived-install.txt" "$OUT/"
echo "commit=$(git rev-parse --short HEAD)" >"$OUT/commit.txt"
echo "host_cpus=$(nproc) host_cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" >"$OUT/host.txt"
awk '!/^#/ { n++; if ($3 > 0) o++ } END { printf "samples_with_another_qemu=%d/%d\n", o, n }' "$OUT/hostload.txt" >>"$OUT/host.txt"
if grep -q '^samples_with_another_qemu=[1-9]' "$OUT/host.txt"; then
  echo "experiment: WARNING: another QEMU shared the host during this invocation (hostload.txt); the figures are disturbed" >&2
fi
status=$(cat "$OUT/status.txt" 2>/dev/null || echo "no status (qemu rc $VM_RC)")
if [ "$status" != DONE ]; then
  echo "experiment: the guest did not finish: $status; console tail:" >&2
  tail -30 "$OUT/console.txt" >&2
  exit 1
fi

# --- results ----------------------------------------------------------------
"$WORK/bin/expreport" -dir "$OUT"
for c in $SCENARIOS; do
  stop=-1
  [ "$c" = hog ] || stop=$REC_HOG_STOP
  d=$HOG_DURATION
  [ "$c" = hog ] || d=$REC_DURATION
  (cd "$OUT" && gnuplot -e "scen='$c'; arms='$ARMS'; hog=$HOG_AT; hogstop=$stop; dur=$d" "$HERE/plot.gp")
done
"$WORK/bin/expreport" -combine "$HERE/out" >/dev/null
echo "experiment: results in $OUT (results.md, latency-*.png), ranges over all invocations in test/experiment/out/combined.md; $((SECONDS - T0)) s in all"
