#!/bin/sh
# Prints the commit EventoDB is built from, for `eventodb version --full`:
# the HEAD of the git checkout SRCDIR is (with -dirty when files differ
# from it), else the commit `make dist` stamped into the release tarball
# (.tarball-commit), else "unknown". Usage: git-commit.sh SRCDIR
srcdir=${1:-.}
top=$(git -C "$srcdir" rev-parse --show-toplevel 2>/dev/null)
# only when SRCDIR is the checkout itself (a tarball unpacked inside some
# other checkout, as make distcheck does, is not)
if [ -n "$top" ] && [ "$(cd "$top" && pwd -P)" = "$(cd "$srcdir" && pwd -P)" ] &&
	c=$(git -C "$srcdir" rev-parse --short=12 HEAD 2>/dev/null); then
	git -C "$srcdir" diff --quiet HEAD -- 2>/dev/null || c="$c-dirty"
	echo "$c"
elif [ -s "$srcdir/.tarball-commit" ]; then
	echo "$(cat "$srcdir/.tarball-commit") (release tarball)"
else
	echo "unknown"
fi
