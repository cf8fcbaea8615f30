#!/bin/sh
# Installs what building, running and testing EventoDB needs on Debian 12.
# Run as root (or through sudo). When another apt or dpkg process holds the
# package lock (unattended-upgrades at boot, a second terminal), it waits
# for it, up to APT_LOCK_TIMEOUT seconds (default 600), instead of failing.
set -e
export DEBIAN_FRONTEND=noninteractive
lock="-o DPkg::Lock::Timeout=${APT_LOCK_TIMEOUT:-600}"
apt-get $lock update -qq
apt-get $lock install -y -qq --no-install-recommends \
	build-essential autoconf automake pkg-config \
	libevent-dev libpq-dev libjson-c-dev libssl-dev libsqlite3-dev zlib1g-dev check \
	libsystemd-dev libgoogle-perftools-dev \
	postgresql postgresql-contrib python3 ca-certificates curl >/dev/null
