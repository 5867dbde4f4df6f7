#!/bin/bash
# extract-vmlinux.sh VMLINUZ OUT: unpack the ELF vmlinux inside a Debian
# bzImage. QEMU boots an ELF vmlinux through its PVH entry point, which
# skips the real-mode setup and the in-guest decompression; under software
# emulation (TCG) that saves a few seconds per boot.
#
# Debian's amd64 kernels are XZ-compressed. The payload is the first XZ
# stream in the file (magic FD 37 7A 58 5A 00); --single-stream makes xz
# stop at its end and ignore the bzImage trailer that follows (tail then
# dies of SIGPIPE, hence the process substitution, whose status is ignored).
set -euo pipefail
in=$1 out=$2
off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$in" | head -1 | cut -d: -f1)
[ -n "$off" ] || { echo "extract-vmlinux: no XZ stream in $in (not an XZ-compressed kernel?)" >&2; exit 1; }
xz -dc --single-stream < <(tail -c +"$((off + 1))" "$in") >"$out.tmp"
[ "$(head -c 4 "$out.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] ||
  { rm -f "$out.tmp"; echo "extract-vmlinux: the XZ payload of $in is not an ELF file" >&2; exit 1; }
mv "$out.tmp" "$out"
