#!/bin/sh
# Starts a throwaway PostgreSQL cluster in a temporary directory and runs the
# freshly built server against it on 127.0.0.1:${PORT:-8080}. Everything is
# removed when the server stops (Ctrl-C). Extra arguments go to eventodb.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${EVENTODB_BIN:-$top/src/eventodb}
pgbin=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
port=${PORT:-8080}
pgport=${PGPORT_DEV:-55432}
dir=$(mktemp -d /tmp/eventodb-dev.XXXXXX)
chmod 755 "$dir"
as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
[ "$(id -u)" = 0 ] && chown postgres "$dir"
cleanup() {
	as_pg "$pgbin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM
as_pg "$pgbin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 >/dev/null
as_pg "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w \
	-o "-c listen_addresses=127.0.0.1 -p $pgport -k $dir" start >/dev/null
as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U postgres eventodb
echo "PostgreSQL running in $dir (port $pgport); starting eventodb on 127.0.0.1:$port"
"$bin" serve --listen 127.0.0.1 --port "$port" \
	--db-url "postgres://postgres@127.0.0.1:$pgport/eventodb" "$@"
