#!/bin/bash
# kernel.sh OUTDIR: fetch Debian's own kernel and prepare what the test VM
# needs from it, in OUTDIR:
#   kver          the kernel release, e.g. 6.1.0-56-amd64
#   vmlinuz       the kernel as packaged (boots through SeaBIOS)
#   vmlinux       the same kernel unpacked (boots through PVH, faster)
#   modules/lib/modules/KVER
#                 a trimmed module tree: only what the VM loads (virtio,
#                 ext4, 9p, IPVS and its schedulers, bridge, veth, ...),
#                 with every dependency, and depmod run on it
#   package       the name and version of the image package used
#
# The kernel is whatever the linux-image-amd64 metapackage points to in
# the host's apt lists: the versioned linux-image-6.x-N-amd64 package is
# read from the metapackage's Depends, never written down here, so a new
# ABI is picked up without editing this file. The full extracted package
# (about 400 MB) is thrown away at the end.
set -euo pipefail
out=$1
here=$(dirname "$(realpath "$0")")
work=$(mktemp -d "${TMPDIR:-/tmp}/e2e-kernel.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
mkdir "$work/debs"
# apt-get download drops privileges to _apt, which must be able to write here.
id _apt >/dev/null 2>&1 && chown _apt "$work/debs"

cd "$work/debs"
apt-get download -q linux-image-amd64 >/dev/null
meta=$(ls linux-image-amd64_*.deb)
image=$(dpkg-deb -f "$meta" Depends | tr ',|' '\n\n' | sed 's/^ *//; s/ .*//' | grep -m1 '^linux-image-[0-9]')
[ -n "$image" ] || { echo "kernel.sh: $meta depends on no linux-image-N package" >&2; exit 1; }
apt-get download -q "$image" >/dev/null
deb=$(ls "$image"_*.deb)
cd "$work"
dpkg-deb -x "debs/$deb" x
kver=$(ls x/lib/modules)
[ "$(echo "$kver" | wc -l)" = 1 ] || { echo "kernel.sh: expected one kernel in $deb, got: $kver" >&2; exit 1; }
depmod -b x "$kver"

rm -rf "$out"
mkdir -p "$out"
cp "x/boot/vmlinuz-$kver" "$out/vmlinuz"
"$here/extract-vmlinux.sh" "$out/vmlinuz" "$out/vmlinux"

# The modules the VM may load, by name; their dependencies (and softdep
# pre-modules such as crc32c for libcrc32c) are added by modprobe below.
#   boot: virtio disk/console/network/rng, ext4, the 9p share;
#   product: ip_vs and every IPVS scheduler (whole directory, below);
#   test network: bridge, veth; nf_tables for the vsopts scenarios'
#   firewall marks (nft's meta, payload, sets and filter chains are built
#   into it in Debian 12's kernel);
#   what systemd asks for at boot anyway (the default qdisc fq_codel,
#   autofs4, configfs, fuse, loop), so the journal has no noise about them.
mods="virtio_pci virtio_blk virtio_net virtio_console virtio_rng ext4 crc32c_generic
  9p 9pnet_virtio ip_vs bridge veth nf_tables af_packet sch_fq_codel autofs4 configfs fuse loop"
src=x/lib/modules/$kver
ipvs=$(cd "$src" && find kernel/net/netfilter/ipvs -name '*.ko*' | sed 's,.*/,,; s,\.ko.*,,')
dst=$out/modules/lib/modules/$kver
mkdir -p "$dst"
for m in $mods $ipvs; do
  modprobe -d x -S "$kver" --show-depends "$m" ||
    { echo "kernel.sh: module $m not found in $deb" >&2; exit 1; }
done | awk '$1 == "insmod" { print $2 }' | sort -u | while read -r f; do
  rel=${f#*/lib/modules/"$kver"/}
  mkdir -p "$dst/$(dirname "$rel")"
  cp "$f" "$dst/$rel"
done
cp "$src"/modules.order "$src"/modules.builtin "$src"/modules.builtin.modinfo "$dst/"
depmod -b "$out/modules" "$kver"
dpkg-deb -W --showformat='${Package} ${Version}\n' "debs/$deb" >"$out/package"
echo "$kver" >"$out/kver"
echo "kernel: $(cat "$out/package") ($kver), $(find "$dst" -name '*.ko*' | wc -l) modules, $(du -sh "$dst" | cut -f1)"
