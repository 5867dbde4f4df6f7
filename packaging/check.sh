#!/usr/bin/env bash
# packaging/check.sh - "make package-check": the packages' quality gates.
#
#  1. reproducibility: "make package" twice (the second time with another
#     umask, time zone, locale and an empty Go build cache), the same
#     sha256 for every .deb and .rpm;
#  2. the maintainer scripts parse (sh -n, dash -n);
#  3. packaging/check-contents.sh (names, files, Debian's feedbackd);
#  4. lintian on each .deb: no error and no warning (overrides, each with its
#     reason, in packaging/lintian/);
#  5. rpmlint on each .rpm: no error (configuration and filters, each with
#     its reason, in packaging/rpmlint.toml);
#  6. mandoc -T lint on the packaged manual pages: no error or warning;
#  7. packaging/copyright names every Go module linked into the binaries.
#
# Installs lintian, rpmlint, rpm, rpm2cpio, cpio and mandoc with apt-get if
# one is missing (needs root then; it waits for apt's and dpkg's locks).
# Leaves the packages of the second build in dist/ and their listings in
# dist/contents-*.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

GO=${GO:-go}
MAKE=${MAKE:-make}
fail=0
step() { printf '\n=== package-check: %s\n' "$*"; }
bad() { echo "FAIL: $*" >&2; fail=1; }

# --- Tools ------------------------------------------------------------------------
need=()
for t in lintian:lintian rpmlint:rpmlint rpm:rpm rpm2cpio:rpm2cpio cpio:cpio mandoc:mandoc dash:dash; do
	command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t#*:}")
done
# rpmlint recognises ELF files through python3-magic.
/usr/bin/python3 -c 'import magic' >/dev/null 2>&1 || need+=(python3-magic)
if [ ${#need[@]} -gt 0 ]; then
	step "installing ${need[*]}"
	# apt-get that waits for another apt or dpkg (an unattended upgrade,
	# another CI job) instead of failing on its lock.
	. test/readme/apt.sh
	apt_install "${need[@]}"
fi

# --- 1. Reproducibility ----------------------------------------------------------------
step "reproducibility: build 1"
"$MAKE" --no-print-directory package GO="$GO"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
first=$work/build1 gocache=$work/gocache
mkdir -p "$first" "$gocache" "$work/rpmlint"
cp dist/lvs-feedbackd-*.deb dist/lvs-feedbackd-*.rpm "$first/"

step "reproducibility: build 2 (umask 077, another TZ, empty GOCACHE)"
(
	umask 077
	export GOCACHE="$gocache" TZ=Pacific/Kiritimati
	"$MAKE" --no-print-directory package GO="$GO"
)
(cd "$first" && sha256sum lvs-feedbackd-*.deb lvs-feedbackd-*.rpm) >dist/sha256-build1.txt
(cd dist && sha256sum lvs-feedbackd-*.deb lvs-feedbackd-*.rpm) >dist/sha256-build2.txt
if diff -u dist/sha256-build1.txt dist/sha256-build2.txt; then
	echo "reproducible: $(wc -l <dist/sha256-build2.txt) packages, identical sha256:"
	cat dist/sha256-build2.txt
else
	bad "the two builds differ (compare with diffoscope $first/X dist/X)"
	for f in "$first"/*; do
		cmp -s "$f" "dist/${f##*/}" && continue
		case $f in
		*.deb) diff <(dpkg-deb -c "$f") <(dpkg-deb -c "dist/${f##*/}") | head -n 20 ;;
		*.rpm) diff <(rpm -qp --dump "$f" 2>/dev/null) <(rpm -qp --dump "dist/${f##*/}" 2>/dev/null) | head -n 20 ;;
		esac
	done
	trap 'rm -rf "$gocache"' EXIT # keep build 1 for a look
fi

# --- 2. Maintainer scripts -------------------------------------------------------------
step "maintainer scripts: sh -n, dash -n"
for s in packaging/deb/* packaging/rpm/*; do
	sh -n "$s" && dash -n "$s" || bad "$s does not parse"
	head -n 1 "$s" | grep -qx '#!/bin/sh' || bad "$s: first line is not #!/bin/sh"
done
echo "ok: $(ls packaging/deb packaging/rpm | grep -c .) scripts"

# --- 3. Contents ------------------------------------------------------------------------
step "contents (packaging/check-contents.sh)"
packaging/check-contents.sh dist || fail=1

# --- 4. lintian -------------------------------------------------------------------------
step "lintian --fail-on error,warning"
for f in dist/lvs-feedbackd-*.deb; do
	echo "lintian ${f##*/}"
	rc=0
	# (not --show-overrides: with it, overridden tags count for --fail-on)
	out=$(lintian --fail-on error,warning --display-info "$f" 2>&1) || rc=$?
	echo "$out" | grep -v '^running with root privileges' || true
	pkg=$(dpkg-deb -f "$f" Package)
	echo "($(grep -c "^$pkg:" "packaging/lintian/$pkg") overrides in packaging/lintian/$pkg)"
	[ "$rc" -eq 0 ] || bad "lintian: errors or warnings in ${f##*/} (exit $rc)"
done

# --- 5. rpmlint -------------------------------------------------------------------------
# After check-contents, which has made sure that the payloads' names are
# relative: rpmlint unpacks a payload with "rpm2cpio | cpio -id", which
# writes absolute names to / (tools/third_party/rpmpack/PATCHED.md).
step "rpmlint -c packaging/rpmlint.toml"
for f in dist/lvs-feedbackd-*.rpm; do
	if abs=$(rpm2cpio "$f" | cpio -t --quiet 2>/dev/null | grep -v '^\./'); then
		bad "rpmlint not run on ${f##*/}: absolute payload names: $abs"
		continue
	fi
	out=$(cd "$work/rpmlint" && rpmlint -c "$OLDPWD/packaging/rpmlint.toml" "$OLDPWD/$f" 2>&1) || true
	echo "$out" | grep -v '^\(=\+ rpmlint session\|rpmlint:\|configuration:\|    /\|checks:\|$\)' || true
	summary=$(echo "$out" | grep 'packages and .* checked' || true)
	errors=$(echo "$summary" | sed -n 's/.* \([0-9]\+\) errors.*/\1/p')
	[ "${errors:-x}" = 0 ] || bad "rpmlint: ${errors:-?} errors in ${f##*/}"
done

# --- 6. Manual pages ----------------------------------------------------------------------
step "mandoc -T lint -W warning (packaged pages)"
pages=$(find dist/build/man -name '*.gz' | sort)
for p in $pages; do
	mandoc -T lint -W warning "$p" || bad "mandoc: $p"
done
echo "ok: $(echo "$pages" | grep -c . || true) pages"

# --- 7. Copyright ---------------------------------------------------------------------------
step "packaging/copyright covers every linked Go module"
mods=$("$GO" version -m dist/build/bin/* | awk '$1 == "dep" { print $2 }' | sort -u)
for m in $mods; do
	base=$(echo "$m" | sed 's#/v[0-9]\+$##') # github.com/x/y/v2 -> github.com/x/y
	grep -qE "^(Files:)? +$base/\*\$" packaging/copyright || bad "packaging/copyright has no Files: $base/* stanza"
done
echo "ok: $(echo "$mods" | wc -l) modules"

echo
if [ "$fail" -ne 0 ]; then
	echo "package-check: FAILED"
	exit 1
fi
echo "package-check: OK"
