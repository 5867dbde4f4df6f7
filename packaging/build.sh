#!/bin/sh
# packaging/build.sh - build the .deb and .rpm packages into dist/ (or
# $PKG_OUT). Run by "make package" after it has built the three binaries
# into dist/build/bin; see packaging/README.md.
#
# Reproducible: every timestamp is the last commit's time (SOURCE_DATE_EPOCH,
# which nfpm honours), man pages are compressed with gzip -9n, every file
# mode is set in the nfpm configuration, and nothing depends on the build
# host's name, the user, the umask or the locale.
#
# Environment (all optional):
#   GO              the go command (default: go)
#   PKG_OUT         where the packages go (default: dist)
#   PKG_VERSION     package version (default: from git, see below)
#   PKG_RELEASE     package release (default: 1)
#   PKG_ARCH        must be the binaries' GOARCH if set (it is read from them)
#   PKG_MAINTAINER  Maintainer/Packager field
#   MAN_DIR         where the roff sources are (default: man)
set -eu

cd "$(dirname "$0")/.."
export LC_ALL=C TZ=UTC

GO=${GO:-go}
BUILD=dist/build
OUT=${PKG_OUT:-dist}
MAN_DIR=${MAN_DIR:-man}
PACKAGES="lvs-feedbackd-master lvs-feedbackd-agent"

die() { echo "packaging/build.sh: $*" >&2; exit 1; }

for b in feedbackd-master feedbackd-agent feedbackd-agent-sync feedbackd-monitor-reaper feedbackctl; do
	[ -x "$BUILD/bin/$b" ] || die "$BUILD/bin/$b missing: run \"make package\""
done

# --- Version and time ------------------------------------------------------
# The version comes from the Makefile (internal/cli/VERSION, see there);
# every time stamp is the last commit's, for reproducible packages.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
fi
export SOURCE_DATE_EPOCH

if [ -z "${PKG_VERSION:-}" ]; then
	# The version is the Makefile's, from internal/cli/VERSION, the one
	# place it is kept: the binaries were built with it, and a second
	# scheme here could only disagree with them.
	die "PKG_VERSION is not set: build the packages with make package"
fi
case $PKG_VERSION in
[0-9]*) ;;
*) die "PKG_VERSION=$PKG_VERSION must start with a digit" ;;
esac
case $PKG_VERSION in
*[!0-9A-Za-z.+~]*) die "PKG_VERSION=$PKG_VERSION: only letters, digits and . + ~ are valid in both dpkg and rpm versions" ;;
esac
PKG_RELEASE=${PKG_RELEASE:-1}
# The architecture is the binaries' (GOARCH=arm64 make package builds arm64).
bin_arch=$($GO version -m "$BUILD/bin/feedbackd-master" | awk '$1 == "build" && $2 ~ /^GOARCH=/ { sub(/^GOARCH=/, "", $2); print $2 }')
[ -n "$bin_arch" ] || die "cannot read GOARCH from $BUILD/bin/feedbackd-master"
[ -z "${PKG_ARCH:-}" ] || [ "$PKG_ARCH" = "$bin_arch" ] || die "PKG_ARCH=$PKG_ARCH, but the binaries are for $bin_arch"
PKG_ARCH=$bin_arch
PKG_MAINTAINER=${PKG_MAINTAINER:-feedbackd maintainers <maintainers@users.noreply.r-seed-b36e41da.example>}
export PKG_VERSION PKG_RELEASE PKG_ARCH PKG_MAINTAINER

# --- Manual pages -----------------------------------------------------------
# Every man/NAME.N: feedbackd-agent* pages go to the agent's package, the
# others to the master's. Compressed with gzip -9n: maximum compression
# (lintian wants it) and no name or time stamp in the header (reproducible).
rm -rf "$BUILD/man"
for page in "$MAN_DIR"/*.[0-9]; do
	[ -f "$page" ] || continue
	name=${page##*/}
	case $name in
	feedbackd-agent*) pkg=lvs-feedbackd-agent ;;
	*) pkg=lvs-feedbackd-master ;;
	esac
	dir="$BUILD/man/$pkg/man${name##*.}"
	mkdir -p "$dir"
	gzip -9n -c "$page" >"$dir/$name.gz"
done

# --- Changelog -----------------------------------------------------------------
# packaging/changelog.yml, preceded by an entry for this build unless its
# first entry already is this version-release.
full="$PKG_VERSION-$PKG_RELEASE"
first=$(sed -n 's/^- semver: *//p' packaging/changelog.yml | head -n 1)
case $PKG_VERSION in
*+git*) note="Snapshot of git commit $(git rev-parse HEAD)." ;;
*)
	note="Built from git commit $(git rev-parse HEAD)."
	[ "$first" = "$full" ] || echo "packaging/build.sh: warning: packaging/changelog.yml has no entry for $full (release notes)" >&2
	;;
esac
{
	if [ "$first" != "$full" ]; then
		cat <<EOF
- semver: $full
  date: $(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
  packager: "$PKG_MAINTAINER"
  deb:
    urgency: medium
    distributions: [unstable]
  changes:
    - note: "$note"
EOF
	fi
	cat packaging/changelog.yml
} >"$BUILD/changelog.yml"

# --- Licence texts for the .rpm -----------------------------------------------
# /usr/share/common-licenses has the Apache licence on Debian; on an RPM
# system the package brings its own copy (for the Go modules under it, see
# packaging/copyright), taken from one of those modules.
ipvs_dir=$($GO list -m -f '{{.Dir}}' github.com/moby/ipvs)
[ -f "$ipvs_dir/LICENSE" ] || die "no Apache-2.0 text: $ipvs_dir/LICENSE (run go mod download)"
cp "$ipvs_dir/LICENSE" "$BUILD/Apache-2.0"

# --- nfpm configurations ----------------------------------------------------------
# nfpm.yaml and packaging/nfpm-agent.yaml, with one pair of entries per
# manual page at their "# @MAN_PAGES@" line (nfpm expands no glob for an
# rpm "doc", and rpmlint wants man pages marked as documentation).
render() { # render CONFIG PACKAGE > RENDERED
	pages=$(cd "$BUILD/man/$2" 2>/dev/null && find . -type f -name '*.gz' | sed 's#^\./##' | sort)
	while IFS= read -r line; do
		case $line in
		*"# @MAN_PAGES@")
			indent=${line%%#*}
			for p in $pages; do
				printf '%s- src: %s\n%s  dst: %s\n%s  packager: deb\n%s  file_info: {mode: 0644}\n' \
					"$indent" "$BUILD/man/$2/$p" "$indent" "/usr/share/man/$p" "$indent" "$indent"
				printf '%s- src: %s\n%s  dst: %s\n%s  type: doc\n%s  packager: rpm\n%s  file_info: {mode: 0644}\n' \
					"$indent" "$BUILD/man/$2/$p" "$indent" "/usr/share/man/$p" "$indent" "$indent" "$indent"
			done
			;;
		*) printf '%s\n' "$line" ;;
		esac
	done <"$1"
}
render nfpm.yaml lvs-feedbackd-master >"$BUILD/nfpm-lvs-feedbackd-master.yaml"
render packaging/nfpm-agent.yaml lvs-feedbackd-agent >"$BUILD/nfpm-lvs-feedbackd-agent.yaml"

# --- nfpm, pinned in tools/go.mod -----------------------------------------------------
# (for the machine it runs on, whatever GOARCH the packages are for)
(cd tools && GOOS=$($GO env GOHOSTOS) GOARCH=$($GO env GOHOSTARCH) CGO_ENABLED=0 \
	$GO build -o ../bin/nfpm github.com/goreleaser/nfpm/v2/cmd/nfpm)

# Every file in the staging directory gets the commit's time too (nfpm
# sets it on what it packages; this is for anything that reads it).
find "$BUILD" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$OUT"
rm -f "$OUT"/lvs-feedbackd-*.deb "$OUT"/lvs-feedbackd-*.rpm
for pkg in $PACKAGES; do
	for fmt in deb rpm; do
		bin/nfpm package --config "$BUILD/nfpm-$pkg.yaml" --packager "$fmt" --target "$OUT/" >/dev/null
	done
done
echo "packaging/build.sh: $PKG_VERSION-$PKG_RELEASE ($PKG_ARCH), SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH:"
ls -1 "$OUT"/lvs-feedbackd-*.deb "$OUT"/lvs-feedbackd-*.rpm
