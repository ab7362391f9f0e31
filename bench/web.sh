#!/usr/bin/env bash
# bench/web.sh — annuaire's web service beside nginx over loopback (issue
# 7): wrk requests/s for GET /healthz and GET / (annuaire's page, served by
# nginx as a static file of the same bytes). Server on CPU 0, wrk on CPU 1,
# runs alternate, medians. Prints one table; see BENCHMARKS.md.
#
# Environment: RUNS (3), SECS (5 per run), CONNS (50), SERVER_CPU (0),
# LOAD_CPU (1), ANNUAIRE (prebuilt binary).
set -euo pipefail
RUNS=${RUNS:-3}
SECS=${SECS:-5}
CONNS=${CONNS:-50}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT_A=${PORT_A:-17180}
PORT_N=${PORT_N:-17181}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/annuaire-web.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
	sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}" >&2
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ -n "${ANNUAIRE:-}" ]; then BIN=$ANNUAIRE; else
	BIN=$WORK/annuaire
	(cd "$ROOT" && go build -o "$BIN" ./cmd/annuaire)
fi

waithttp() { for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$1/healthz" && return 0; sleep 0.1; done; echo "no HTTP on $1" >&2; return 1; }

taskset -c "$SERVER_CPU" "$BIN" serve --data "$WORK/data" --dns 127.0.0.1:0 --web 127.0.0.1:$PORT_A \
	--echo '' --mail '' --telnet '' --daytime '' --discard '' --log-level error >"$WORK/annuaire.log" 2>&1 &
PIDS+=($!)
waithttp $PORT_A

# nginx serves annuaire's own bytes: the page as index.html, healthz as a file
mkdir -p "$WORK/www"
curl -sf "http://127.0.0.1:$PORT_A/" >"$WORK/www/index.html"
curl -sf "http://127.0.0.1:$PORT_A/healthz" >"$WORK/www/healthz"
cat >"$WORK/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
	access_log off;
	types { text/html html; text/plain txt; }
	default_type text/plain;
	# nginx's usual static-file tuning: one segment for header and body,
	# no open(2)/fstat(2) per request
	sendfile on;
	tcp_nopush on;
	open_file_cache max=16 inactive=60s;
	client_body_temp_path $WORK/tmp; proxy_temp_path $WORK/tmp; fastcgi_temp_path $WORK/tmp;
	uwsgi_temp_path $WORK/tmp; scgi_temp_path $WORK/tmp;
	server {
		listen 127.0.0.1:$PORT_N;
		root $WORK/www;
		location = /healthz { default_type text/plain; }
	}
}
CONF
mkdir -p "$WORK/tmp"
taskset -c "$SERVER_CPU" "$NGINX" -c "$WORK/nginx.conf" -p "$WORK" -e "$WORK/nginx-error.log" &
PIDS+=($!)
waithttp $PORT_N
PAGE=$(wc -c <"$WORK/www/index.html"); HZ=$(wc -c <"$WORK/www/healthz")
echo "machine: $(nproc) CPUs, $(uname -r); $("$NGINX" -v 2>&1); $(wrk -v 2>&1 | head -1 | cut -c1-40); GET / = $PAGE bytes, /healthz = $HZ bytes" >&2

# wrk PORT PATH: requests/s (non-2xx answers make it fail loudly)
bench() {
	local out
	out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${SECS}s" "http://127.0.0.1:$1$2" 2>&1)
	if grep -q 'Non-2xx' <<<"$out"; then echo "non-2xx answers from :$1$2" >&2; grep Non-2xx <<<"$out" >&2; fi
	awk '/Requests\/sec/ {print $2}' <<<"$out"
}
for i in $(seq "$RUNS"); do
	for p in /healthz /; do
		for s in annuaire nginx; do
			port=$PORT_A; [ $s = nginx ] && port=$PORT_N
			l=$(cut -d' ' -f1 /proc/loadavg)
			v=$(bench $port $p)
			echo "  $s GET $p run $i: $v req/s, load $l" >&2
			echo "$v" >>"$WORK/r-$s-${p//\//_}"
		done
	done
done
median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
echo "| wrk -t1 -c$CONNS (server on CPU $SERVER_CPU, wrk on CPU $LOAD_CPU; medians of $RUNS × ${SECS}s) | annuaire req/s | nginx req/s | ratio annuaire/nginx |"
echo "|---|---|---|---|"
for p in /healthz /; do
	a=$(median <"$WORK/r-annuaire-${p//\//_}"); n=$(median <"$WORK/r-nginx-${p//\//_}")
	sz=$HZ; [ "$p" = / ] && sz=$PAGE
	printf '| GET %s (%s bytes) | %.0f | %.0f | %.2f |\n' "$p" "$sz" "$a" "$n" "$(awk -v a="$a" -v b="$n" 'BEGIN {print a / b}')"
done
