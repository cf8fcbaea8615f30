#!/bin/sh
# Installs what building, running and testing EventoDB needs on Debian 12.
# Run as root (or through sudo).
set -e
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
	build-essential autoconf automake pkg-config \
	libevent-dev libpq-dev libjson-c-dev libssl-dev libsqlite3-dev zlib1g-dev check \
	libsystemd-dev libgoogle-perftools-dev libhttp-parser-dev google-perftools \
	postgresql postgresql-contrib python3 ca-certificates curl >/dev/null
