#!/bin/sh
# Installs what building, running and testing EventoDB needs on Debian 12:
# the build, the Debian package build (debhelper, lintian), the man page
# test (groff), clang for the libFuzzer targets, valgrind for make
# check-valgrind. Run as root (or through sudo). When another apt or dpkg
# process holds the package lock (unattended-upgrades at boot, a second
# terminal), it waits for it, up to APT_LOCK_TIMEOUT seconds (default 600),
# instead of failing.
set -e
export DEBIAN_FRONTEND=noninteractive
lock="-o DPkg::Lock::Timeout=${APT_LOCK_TIMEOUT:-600}"
apt-get $lock update -qq
apt-get $lock install -y -qq --no-install-recommends \
	build-essential autoconf automake pkg-config \
	libevent-dev libpq-dev libjson-c-dev libssl-dev libsqlite3-dev zlib1g-dev check \
	libsystemd-dev libgoogle-perftools-dev libhttp-parser-dev google-perftools \
	groff-base man-db \
	debhelper dpkg-dev lintian \
	postgresql postgresql-contrib python3 ca-certificates curl \
	clang valgrind >/dev/null
