#!/bin/sh
# Builds the Debian package from this source tree in a scratch copy (so the
# tree's own build is left alone), checks it with lintian and leaves the
# .deb, .buildinfo and .changes in OUTDIR.
#   sh contrib/build-deb.sh OUTDIR [dpkg-buildpackage options]
# DEB_BUILD_OPTIONS=nocheck skips the test suite inside the package build.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 OUTDIR [dpkg-buildpackage options]" >&2; exit 2; }
out=$1
shift
src=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
work=$(mktemp -d "${TMPDIR:-/tmp}/eventodb-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree="$work/eventodb-$version"
mkdir "$tree"
# The files of the source: those git tracks plus new ones not ignored, or,
# outside a git checkout, everything.
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
	(cd "$src" && git ls-files -z -c -o --exclude-standard | xargs -0 cp --parents -t "$tree")
else
	cp -a "$src/." "$tree"
fi
(cd "$tree" && dpkg-buildpackage -us -uc -b "$@")
for f in "$work"/eventodb_"$version"_*.deb "$work"/eventodb-dbgsym_"$version"_*.deb \
	"$work"/eventodb_"$version"_*.buildinfo "$work"/eventodb_"$version"_*.changes; do
	[ -e "$f" ] && cp "$f" "$out/"
done
changes=$(ls "$out"/eventodb_"$version"_*.changes)
echo "=== lintian $changes"
lintian --fail-on error --display-info --pedantic --tag-display-limit 0 "$changes"
ls -l "$out"/eventodb*_"$version"_*.deb
