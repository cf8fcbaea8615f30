# Sourced by the contrib scripts: a throwaway PostgreSQL cluster in a fresh
# temporary directory, run as the postgres user when we are root.
#   pg_throwaway_start PREFIX PORT [extra postgres -c options]
# sets $dir (the temporary directory, removed by pg_throwaway_stop) and
# creates database "eventodb" on 127.0.0.1:PORT.
pgbin=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}

as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_throwaway_start() {
	dir=$(mktemp -d "/tmp/$1.XXXXXX")
	pgport=$2
	shift 2
	chmod 755 "$dir"
	[ "$(id -u)" = 0 ] && chown postgres "$dir"
	as_pg "$pgbin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 >/dev/null
	as_pg "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w \
		-o "-c listen_addresses=127.0.0.1 -p $pgport -k $dir $*" start >/dev/null
	as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U postgres eventodb
}

pg_throwaway_stop() {
	[ -n "${dir:-}" ] || return 0
	as_pg "$pgbin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
	rm -rf "$dir"
}
