#!/usr/bin/env bash
# packaging/check-contents.sh - what the packages install, and whether it is
# right. Run by "make package-check"; can be run alone after "make package":
#     packaging/check-contents.sh [DIR]        (default DIR: dist)
#
# For each lvs-feedbackd-*.deb and .rpm in DIR it writes the listing to
# DIR/contents-<file name>.txt (dpkg-deb -c, or rpm -qlvp) and fails if:
#   - a package is called "feedbackd" (Debian's and Fedora's name for an
#     unrelated haptic feedback daemon);
#   - a package installs a file of that package's, or anything under its
#     own directories (/usr/share/doc/feedbackd/, /usr/share/feedbackd/),
#     or a manual page called feedbackd.N. The file list is the real one
#     (apt-get download feedbackd; dpkg-deb -c) when the Debian archive can
#     be reached, else the list below;
#   - the two packages install the same file (they could not be installed
#     together);
#   - an expected file is missing: each binary, unit, configuration file and
#     manual page, the copyright file; a binary in /usr/sbin has no manual
#     page; a file in /etc is not a conffile (deb) or %config (rpm);
#   - a .rpm's payload has an absolute member name (see
#     tools/third_party/rpmpack/PATCHED.md).
set -euo pipefail
export LC_ALL=C

DIR=${1:-dist}
fail=0
rm -f "$DIR"/contents-lvs-feedbackd-*.txt
bad() { echo "FAIL: $*" >&2; fail=1; }

# --- Debian's "feedbackd" --------------------------------------------------------
# From feedbackd 0.0.3-1 (Debian 12) and library-notes §0.1; used when the
# archive cannot be reached.
foreign_fallback='/etc/modules-load.d/feedbackd.conf
/usr/libexec/feedbackd
/usr/share/man/man8/feedbackd.8.gz
/usr/share/doc/feedbackd/
/usr/share/feedbackd/'

foreign=
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if command -v apt-get >/dev/null &&
	(cd "$tmp" && timeout 120 apt-get download -q feedbackd >/dev/null 2>&1) &&
	deb=$(ls "$tmp"/feedbackd_*.deb 2>/dev/null | head -n 1) && [ -n "$deb" ]; then
	# Files and symlinks, by exact path; directories only where they are
	# the package's own (their name says feedbackd), as prefixes.
	# With merged /usr, /lib/x is /usr/lib/x: both are listed.
	foreign=$(dpkg-deb -c "$deb" | awk '{ p = $6; sub(/^\./, "", p)
		if ($1 ~ /^d/ && p !~ /feedbackd/) next
		print p; if (p ~ /^\/(lib|bin|sbin)\//) print "/usr" p }' | sort -u)
	echo "check-contents: the file list of Debian's feedbackd: from ${deb##*/} ($(echo "$foreign" | wc -l) entries)"
else
	echo "check-contents: Debian archive not reachable: the file list of Debian's feedbackd is the built-in one"
fi
foreign=$(printf '%s\n%s\n' "$foreign_fallback" "$foreign" | sed '/^$/d' | sort -u)

# --- Listings --------------------------------------------------------------------
# paths PACKAGE-FILE: every installed path, one per line; directories end in /.
paths() {
	case $1 in
	*.deb) dpkg-deb -c "$1" | awk '{ p = $6; sub(/^\./, "", p); if (p != "/") print p }' ;;
	*.rpm) rpm -qp --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' "$1" 2>/dev/null |
		awk '{ p = $2; if ($1 ~ /^d/) p = p "/"; print p }' ;;
	esac
}
# configs PACKAGE-FILE: the conffiles (deb) or %config files (rpm).
configs() {
	case $1 in
	*.deb) dpkg-deb -I "$1" conffiles 2>/dev/null || true ;;
	*.rpm) rpm -qp --configfiles "$1" 2>/dev/null || true ;;
	esac
}
pkgname() {
	case $1 in
	*.deb) dpkg-deb -f "$1" Package ;;
	*.rpm) rpm -qp --qf '%{NAME}' "$1" 2>/dev/null ;;
	esac
}

expected() { # expected PACKAGE-NAME
	case $1 in
	lvs-feedbackd-master)
		cat <<-EOF
			/usr/sbin/feedbackd-master
			/usr/bin/feedbackctl
			/usr/lib/systemd/system/feedbackd-master.socket
			/usr/lib/systemd/system/feedbackd-master.service
			/usr/lib/modules-load.d/lvs-feedbackd.conf
			/etc/feedbackd/master.conf
			/usr/share/man/man8/feedbackd-master.8.gz
			/usr/share/man/man8/feedbackctl.8.gz
			/usr/share/man/man5/feedbackd-master.conf.5.gz
			/usr/share/doc/lvs-feedbackd-master/copyright
			/usr/share/doc/lvs-feedbackd-master/examples/ipvs-sysctl.conf
		EOF
		;;
	lvs-feedbackd-agent)
		cat <<-EOF
			/usr/sbin/feedbackd-agent
			/usr/sbin/feedbackd-agent-sync
			/usr/libexec/lvs-feedbackd-agent/feedbackd-monitor-reaper
			/usr/lib/systemd/system/feedbackd-agent@.service
			/usr/lib/systemd/system/feedbackd-agent-sync.path
			/usr/lib/systemd/system/feedbackd-agent-sync.service
			/etc/feedbackd/agent.conf
			/etc/feedbackd/agent.d/
			/etc/feedbackd/agent.d/example.conf.sample
			/usr/share/man/man8/feedbackd-agent.8.gz
			/usr/share/man/man8/feedbackd-agent-sync.8.gz
			/usr/share/man/man5/feedbackd-agent.conf.5.gz
			/usr/share/doc/lvs-feedbackd-agent/copyright
		EOF
		;;
	esac
}
expected_by_format() { # expected_by_format PACKAGE-NAME deb|rpm
	case $2 in
	deb) printf '/usr/share/doc/%s/changelog.Debian.gz\n/usr/share/lintian/overrides/%s\n' "$1" "$1" ;;
	rpm) printf '/usr/share/licenses/%s/LICENSE\n/usr/share/licenses/%s/Apache-2.0\n' "$1" "$1" ;;
	esac
}

shopt -s nullglob
# (and anything called feedbackd that found its way there)
pkgs=("$DIR"/lvs-feedbackd-*.deb "$DIR"/lvs-feedbackd-*.rpm "$DIR"/feedbackd_*.deb "$DIR"/feedbackd-[0-9]*.rpm)
[ ${#pkgs[@]} -gt 0 ] || { echo "FAIL: no lvs-feedbackd-*.deb or .rpm in $DIR: run make package" >&2; exit 1; }
for fmt in deb rpm; do
	n=$(ls "$DIR"/*."$fmt" 2>/dev/null | grep -c 'lvs-feedbackd-' || true)
	[ "$n" -eq 2 ] || bad "$DIR: $n lvs-feedbackd-*.$fmt files, expected 2 (master and agent)"
done

declare -A files_of
for f in "${pkgs[@]}"; do
	fmt=${f##*.}
	name=$(pkgname "$f")
	out="$DIR/contents-${f##*/}.txt"
	case $fmt in
	deb) dpkg-deb -c "$f" >"$out" ;;
	rpm) rpm -qlvp "$f" >"$out" 2>/dev/null ;;
	esac
	list=$(paths "$f")
	files_of[$fmt:$name]=$(echo "$list" | grep -v '/$' || true)
	echo "check-contents: $name ($fmt): $(echo "${files_of[$fmt:$name]}" | wc -l) files -> $out"

	case $name in
	feedbackd) bad "${f##*/}: a package may not be called feedbackd (an unrelated Debian/Fedora package)" ;;
	lvs-feedbackd-master | lvs-feedbackd-agent) ;;
	*) bad "${f##*/}: unexpected package name $name" ;;
	esac

	# Nothing of Debian's feedbackd.
	while IFS= read -r p; do
		[ -n "$p" ] || continue
		while IFS= read -r q; do
			case $q in
			*/) case $p in "$q"*) bad "$name ($fmt) installs $p, under $q of Debian's feedbackd" ;; esac ;;
			*) [ "$p" != "$q" ] || bad "$name ($fmt) installs $p, a file of Debian's feedbackd" ;;
			esac
		done <<<"$foreign"
		[ "$p" != "/usr/share/doc/feedbackd" ] && [ "$p" != "/usr/share/feedbackd" ] ||
			bad "$name ($fmt) installs $p, a directory of Debian's feedbackd"
		case ${p##*/} in
		feedbackd.[0-9]* | feedbackd.[0-9]*.gz)
			case $p in /usr/share/man/*) bad "$name ($fmt) installs $p: a manual page may not be called feedbackd" ;; esac ;;
		esac
	done <<<"$list"

	# Everything expected.
	while IFS= read -r e; do
		grep -qxF -- "$e" <<<"$list" || bad "$name ($fmt) lacks $e"
	done < <(expected "$name"; expected_by_format "$name" "$fmt")
	# A manual page for each binary.
	while IFS= read -r b; do
		[ -n "$b" ] || continue
		grep -q "^/usr/share/man/man[0-9]/${b##*/}\.[0-9][a-z]*\.gz\$" <<<"$list" ||
			bad "$name ($fmt): $b has no manual page"
	done < <(grep '^/usr/s\?bin/[^/]\+$' <<<"$list" || true)
	# Every file in /etc is a conffile (deb) or %config (rpm).
	conf=$(configs "$f")
	while IFS= read -r c; do
		[ -n "$c" ] || continue
		grep -qxF -- "$c" <<<"$conf" || bad "$name ($fmt): $c is not marked as configuration"
	done < <(grep '^/etc/.*[^/]$' <<<"$list" || true)
	# rpm: relative payload names only.
	if [ "$fmt" = rpm ]; then
		abs=$(rpm2cpio "$f" | cpio -t --quiet 2>/dev/null | grep -v '^\./' || true)
		[ -z "$abs" ] || bad "${f##*/}: absolute payload names (rpm2cpio | cpio -id would write to /): $(echo "$abs" | head -n 3 | tr '\n' ' ')"
	fi
done

# The two packages never install the same file.
for fmt in deb rpm; do
	both=$(comm -12 <(echo "${files_of[$fmt:lvs-feedbackd-master]:-}" | sort) <(echo "${files_of[$fmt:lvs-feedbackd-agent]:-}" | sort) | sed '/^$/d')
	[ -z "$both" ] || bad "($fmt) both packages install: $(echo "$both" | tr '\n' ' ')"
done

if [ "$fail" -ne 0 ]; then
	echo "check-contents: FAILED" >&2
	exit 1
fi
echo "check-contents: OK"
