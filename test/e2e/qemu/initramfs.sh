#!/bin/bash
# initramfs.sh KERNELDIR OUT.cpio.gz: a tiny initramfs for the test VM:
# busybox-static, the modules needed to reach the root image (virtio,
# ext4) and the 9p share, and /init (next to this script), which mounts
# the root and switch_roots to systemd. KERNELDIR is the output of
# kernel.sh (kver and its trimmed module tree).
set -euo pipefail
kdir=$(realpath "$1") out=$(realpath -m "$2")
here=$(dirname "$(realpath "$0")")
kver=$(cat "$kdir/kver")
mods=$kdir/modules
busybox=/bin/busybox
# ldd fails on a static binary ("not a dynamic executable").
if [ ! -x "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
  echo "initramfs.sh: $busybox is missing or not static (install busybox-static)" >&2; exit 1
fi

t=$(mktemp -d "${TMPDIR:-/tmp}/e2e-initramfs.XXXXXX")
trap 'rm -rf "$t"' EXIT
# mktemp makes the directory 0700; it becomes the initramfs's / and must
# be 0755 or nothing in it is reachable for a non-root process.
chmod 755 "$t"
mkdir -p "$t"/{bin,sbin,etc,proc,sys,dev,newroot,lib/modules/"$kver"}
cp "$busybox" "$t/bin/busybox"
for a in $("$busybox" --list); do
  [ -e "$t/bin/$a" ] || ln -s busybox "$t/bin/$a"
done
# The kernel's request_module() runs /sbin/modprobe.
ln -s ../bin/busybox "$t/sbin/modprobe"

# Modules in load order: modprobe --show-depends lists dependencies (and
# softdep pre-modules) before the module itself. Busybox cannot read
# compressed modules, so decompress any .ko.xz/.ko.zst (a later Debian).
for m in crc32c_generic virtio_pci virtio_blk ext4 9pnet_virtio 9p; do
  modprobe -d "$mods" -S "$kver" --show-depends "$m"
done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' | while read -r f; do
  rel=${f#*/lib/modules/"$kver"/}
  mkdir -p "$t/lib/modules/$kver/$(dirname "$rel")"
  case $rel in
    *.ko.xz) xz -dc "$f" >"$t/lib/modules/$kver/${rel%.xz}"; rel=${rel%.xz} ;;
    *.ko.zst) zstd -qdc "$f" >"$t/lib/modules/$kver/${rel%.zst}"; rel=${rel%.zst} ;;
    *) cp "$f" "$t/lib/modules/$kver/$rel" ;;
  esac
  echo "$rel" >>"$t/etc/load-modules"
done
cp "$mods/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$t/lib/modules/$kver/"
depmod -b "$t" "$kver"
install -m755 "$here/init" "$t/init"
(cd "$t" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) >"$out.tmp"
mv "$out.tmp" "$out"
