#!/bin/sh
# Starts a throwaway PostgreSQL cluster in a temporary directory and runs the
# freshly built server against it on 127.0.0.1:${PORT:-8080}. Everything is
# removed when the server stops (Ctrl-C). Extra arguments go to eventodb.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${EVENTODB_BIN:-$top/src/eventodb}
port=${PORT:-8080}
. "$top/contrib/throwaway-pg.sh"
trap pg_throwaway_stop EXIT INT TERM
pg_throwaway_start eventodb-dev "${PGPORT_DEV:-55432}"
echo "PostgreSQL running in $dir (port $pgport); starting eventodb on 127.0.0.1:$port"
"$bin" serve --listen 127.0.0.1 --port "$port" \
	--db-url "postgres://postgres@127.0.0.1:$pgport/eventodb" "$@"
