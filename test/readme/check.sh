#!/usr/bin/env bash
# make readme-check: the README's two commands, make demo and make test, in
# a clean Debian 12 root with only Go (and make, which the commands are)
# added, run as a new user would run them (test/readme/guest.sh). Fails
# when the demo's own checks fail, when make test fails, or when either
# does not say exactly what to install. Needs root (debootstrap,
# systemd-nspawn).
#
# The root: debootstrap --variant=minbase (the smallest Debian 12; no
# systemd, no CA certificates) with make, built by test/e2e/qemu/rootfs.sh
# and cached in .cache/e2e/readme-rootfs-KEY.tar like the e2e roots. Go is
# the host's, bind-mounted read-only at /usr/local/go. The source is a copy
# of this working tree as git sees it (tracked and untracked files, not the
# ignored ones: no bin/, no .cache); README_CHECK_REV=HEAD (or any commit)
# copies that commit instead. The container shares the host's network, so
# apt and the Go module proxy are reachable; the modules are downloaded
# afresh, as on a new machine. The user's ~/.cache (Go's build cache and
# staticcheck's) is kept between runs in .cache/readme-check/home-cache:
# both caches are keyed on their inputs, so they make a run faster, never
# different. A first run builds everything: about 16 minutes on two busy
# cores, most of it go vet, staticcheck and the tests compiling cold.
#
# The whole transcript is printed and kept in .cache/readme-check/transcript.txt;
# the last line is "readme-check: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
TOP=$PWD
CACHE=$TOP/.cache/e2e
[ "$(id -u)" = 0 ] || { echo "make readme-check needs root (debootstrap, systemd-nspawn)" >&2; exit 1; }
T0=$SECONDS

. test/readme/apt.sh
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
[ ${#need[@]} = 0 ] || apt_install "${need[@]}"

GOROOT_HOST=$(${GO:-go} env GOROOT) || { echo "readme-check: no Go on this host (go env GOROOT)" >&2; exit 1; }

PKGS=make
ROOTFS=$CACHE/readme-rootfs-$(cat <(echo "bookworm minbase $PKGS") test/e2e/qemu/rootfs.sh | sha256sum | cut -c1-12).tar
mkdir -p "$CACHE"
if [ ! -f "$ROOTFS" ]; then
  echo "=== building the clean Debian 12 root (debootstrap minbase + $PKGS; cached in $CACHE)"
  test/e2e/qemu/rootfs.sh "$ROOTFS" "$PKGS"
  for f in "$CACHE"/readme-rootfs-*.tar; do [ "$f" = "$ROOTFS" ] || rm -f "$f"; done
fi
t_root=$((SECONDS - T0))

WORK=$(mktemp -d /tmp/feedbackd-readme.XXXXXX)
trap 'rm -rf "$WORK" "/run/systemd/nspawn/propagate/readme-check-$$"' EXIT
trap 'exit 143' TERM INT # so that the EXIT trap cleans up on ^C or kill too
R=$WORK/root
mkdir -p "$R" "$WORK/out"
tar -C "$R" -xf "$ROOTFS"
mkdir -p "$R/usr/local/src/feedbackd" "$R/usr/local/lib/readme-check"
if [ -n "${README_CHECK_REV:-}" ]; then
  git archive "$README_CHECK_REV" | tar -C "$R/usr/local/src/feedbackd" -x
  src="$README_CHECK_REV ($(git rev-parse --short "$README_CHECK_REV"))"
else
  git ls-files -z --cached --others --exclude-standard |
    tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -C "$R/usr/local/src/feedbackd" -x
  src="the working tree ($(git describe --always --dirty 2>/dev/null || echo '?'))"
fi
install -m755 test/readme/guest.sh "$R/usr/local/lib/readme-check/guest.sh"
# This network's own certificate authorities (a TLS-intercepting proxy's,
# say): the host's CA bundle minus Debian's. They go where an administrator
# of this network would put them, and count only once ca-certificates is
# installed in the root, as on a real machine here.
mkdir -p "$R/usr/local/share/ca-certificates"
if [ -s /etc/ssl/certs/ca-certificates.crt ] && [ -d /usr/share/ca-certificates/mozilla ]; then
  awk -v out="$R/usr/local/share/ca-certificates" '
    FNR == 1 { file++ }
    /-----BEGIN CERTIFICATE-----/ { pem = ""; inb = 1 }
    inb { pem = pem $0 "\n" }
    /-----END CERTIFICATE-----/ {
      inb = 0
      if (file == 1) known[pem] = 1
      else if (!(pem in known)) { n++; f = out "/host-network-" n ".crt"; printf "%s", pem > f; close(f) }
    }' <(for f in /usr/share/ca-certificates/mozilla/*.crt; do cat "$f"; echo; done) /etc/ssl/certs/ca-certificates.crt
fi

mkdir -p .cache/readme-check/home-cache
echo "=== make demo and make test in a clean Debian 12 root, source: $src"
start=$SECONDS
set +e
# --as-pid2: a stub init reaps the demo's processes; the host's network
# (no --private-network) reaches the Debian mirror and proxy.golang.org.
machine=readme-check-$$
timeout -k 10 1800 systemd-nspawn -q -D "$R" -M "$machine" --register=no --keep-unit --as-pid2 \
  --bind-ro="$GOROOT_HOST:/usr/local/go" --bind="$WORK/out:/mnt/out" \
  --bind="$TOP/.cache/readme-check/home-cache:/mnt/home-cache" \
  /usr/local/lib/readme-check/guest.sh </dev/null 2>&1 | tee .cache/readme-check/transcript.txt
rc=${PIPESTATUS[0]}
set -e
echo
echo "=== readme-check: the root took ${t_root} s (0 when cached), the container $((SECONDS - start)) s (nspawn rc=$rc)"
cat "$WORK/out/results.txt" 2>/dev/null || true
passed=$(grep -c '^PASS' "$WORK/out/results.txt" 2>/dev/null || true)
failed=$(grep -c '^FAIL' "$WORK/out/results.txt" 2>/dev/null || true)
passed=${passed:-0} failed=${failed:-0}
if ! grep -q '^DONE' "$WORK/out/results.txt" 2>/dev/null; then
  echo "readme-check: the container did not finish its steps (rc=$rc$([ "$rc" = 124 ] && echo ', killed at 1800 s'))" >&2
  failed=$((failed + 1))
fi
echo "transcript: .cache/readme-check/transcript.txt"
echo "readme-check: $passed passed, $failed failed"
[ "$failed" = 0 ]
