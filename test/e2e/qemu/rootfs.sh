#!/bin/bash
# rootfs.sh OUT.tar PACKAGES: a Debian 12 (bookworm) root file system made
# by debootstrap --variant=minbase with PACKAGES (comma-separated) added,
# saved as a tar. The mirror is the host's own, read from its apt sources.
set -euo pipefail
out=$(realpath -m "$1") pkgs=$2
mirror() {
  local u
  u=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$u" ] || u=$(awk '/^deb / { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
  echo "${u:-http://deb.debian.org/debian}"
}
t=$(mktemp -d "${TMPDIR:-/tmp}/e2e-rootfs.XXXXXX")
trap 'rm -rf "$t"' EXIT
chmod 755 "$t"
if ! debootstrap --variant=minbase --include="$pkgs" bookworm "$t/root" "$(mirror)" >"$t/log" 2>&1; then
  tail -30 "$t/log" >&2
  exit 1
fi
tar -C "$t/root" -cf "$out.tmp" .
mv "$out.tmp" "$out"
