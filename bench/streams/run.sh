#!/usr/bin/env bash
# bench/streams/run.sh — issue 18 section 1's acceptance, from outside:
# N (20,000) unauthenticated /api/events connections, from SOURCES
# loopback addresses, half of the streams never reading, must not take
# the server down. While they are held, registry changes go on, and real
# clients check the rest: dig over UDP and TCP, curl on the API, nc on
# echo, the hosted services and a tcp-checked service still in DNS after
# more than a health-check interval; RSS and descriptors are read from
# /proc before, during and after. Prints a transcript; exits 1 if a check
# failed.
#
# The streams come from PROCS (4) processes of bench/streams, each under
# its own RLIMIT_NOFILE (raised to the hard limit), since one process may
# not hold 20,000 sockets where the hard limit is 20,000.
#
# Environment: N (20000), SOURCES (40), PROCS (4), INSTANCES (5000, loaded
# before the start by bench/load), BIG (1000 more, of 2 KB each, through
# the API), HOLD (40 s), AFTER (150 s: when memory is read again after the
# streams closed), ANNUAIRE (prebuilt binary).
# Linux: source addresses across 127.0.0.0/8, /proc.
set -euo pipefail
N=${N:-20000}
SOURCES=${SOURCES:-40}
PROCS=${PROCS:-4}
INSTANCES=${INSTANCES:-5000}
BIG=${BIG:-1000}
HOLD=${HOLD:-40}
AFTER=${AFTER:-150}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/annuaire-streams.XXXXXX)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
for tool in dig curl nc; do
	command -v $tool >/dev/null || { echo "streams: needs $tool" >&2; exit 2; }
done

ulimit -n "$(ulimit -Hn)"
if [ -n "${ANNUAIRE:-}" ]; then BIN=$ANNUAIRE; else
	BIN=$WORK/annuaire
	(cd "$ROOT" && go build -o "$BIN" ./cmd/annuaire)
fi
(cd "$ROOT" && go build -o "$WORK/load" ./bench/load && go build -o "$WORK/streams" ./bench/streams)
"$WORK/load" -data "$WORK/data" -instances "$INSTANCES" >/dev/null

"$BIN" serve --data "$WORK/data" --dns 127.0.0.1:0 --web 127.0.0.1:0 --echo 127.0.0.1:0 --mail 127.0.0.1:0 \
	--telnet 127.0.0.1:0 --daytime 127.0.0.1:0 --discard 127.0.0.1:0 --hostname box >"$WORK/out" 2>"$WORK/err" &
APID=$!
PIDS+=("$APID")
for _ in $(seq 200); do grep -q '^web ' "$WORK/out" && break; sleep 0.1; done
grep -q '^web ' "$WORK/out" || { cat "$WORK/out" "$WORK/err"; exit 1; }
DNS=$(awk '/^dns /{split($5, a, ":"); print a[2]}' "$WORK/out")
WEB=$(awk '/^web /{sub("http://", "", $2); sub("/$", "", $2); print $2}' "$WORK/out")
ECHO=$(awk '/^echo .*_echo._tcp/{n = split($NF, a, ":"); print a[n]}' "$WORK/out")
TOKEN=$(cat "$WORK/data/token")
echo "annuaire serve: DNS 127.0.0.1:$DNS, web $WEB, echo 127.0.0.1:$ECHO; RLIMIT_NOFILE $(ulimit -n)"

# probe: a service whose tcp check connects to echo every second.
curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" \
	-d '{"name":"probe","port":'"$ECHO"',"addresses":["127.0.0.1"],"check":{"type":"tcp","interval":"1s"}}' "http://$WEB/api/services"
# BIG instances of 2 KB (16 TXT strings of 100 bytes) through the API, in
# one curl: what each stream's snapshot then carries.
txt=$(printf '"k%d=%0100d",' $(seq 1 16) | sed 's/,$//')
for i in $(seq "$BIG"); do
	[ "$i" = 1 ] || echo next
	printf 'url = "http://%s/api/services"\nheader = "Authorization: Bearer %s"\noutput = /dev/null\nfail\ndata = {"name":"big","port":%d,"addresses":["127.0.0.8"],"txt":[%s]}\n' \
		"$WEB" "$TOKEN" $((10000 + i)) "$txt"
done >"$WORK/big.curl"
[ "$BIG" = 0 ] || curl -s -K "$WORK/big.curl" || { echo "streams: the BIG registrations failed" >&2; exit 1; }

FAILED=0
fail() { echo "FAIL: $*"; FAILED=1; }
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
mem() {
	local m
	m=$(curl -s "http://$WEB/metrics")
	echo "  serve: $(awk '/^VmRSS/{r=$2} /^VmHWM/{h=$2} END{printf "RSS %d MB (peak %d MB)", r/1024, h/1024}' /proc/$APID/status)," \
		"Go heap in use $(awk '/^go_memstats_heap_inuse_bytes /{printf "%d", $2/1048576}' <<<"$m") MB," \
		"$(ls /proc/$APID/fd | wc -l) descriptors," \
		"$(awk '/^annuaire_connections_open\{service="web"\}/{print $2}' <<<"$m") web connections"
}
check() {
	local t out
	echo "$1:"
	t=$(date +%s%N)
	out=$(dig @127.0.0.1 -p "$DNS" +time=2 +tries=1 +short _echo._tcp.svc.internal. SRV 2>&1) || true
	[[ $out == *box.svc.internal.* ]] && echo "  dig      _echo._tcp SRV: $out ($(ms $t) ms)" || fail "dig UDP: $out"
	t=$(date +%s%N)
	out=$(dig @127.0.0.1 -p "$DNS" +time=2 +tries=1 +tcp +short _echo._tcp.svc.internal. SRV 2>&1) || true
	[[ $out == *box.svc.internal.* ]] && echo "  dig +tcp _echo._tcp SRV: $out ($(ms $t) ms)" || fail "dig TCP: $out"
	t=$(date +%s%N)
	out=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://$WEB/api/services?limit=100") || true
	[ "$out" = 200 ] && echo "  curl     /api/services?limit=100: $out ($(ms $t) ms)" || fail "curl /api/services: $out"
	t=$(date +%s%N)
	out=$(echo bonjour | nc -N -w 5 127.0.0.1 "$ECHO" 2>&1) || true
	[ "$out" = bonjour ] && echo "  nc       echo: $out ($(ms $t) ms)" || fail "nc echo: $out"
	local s missing=""
	for s in echo._tcp echo._udp http._tcp smtp._tcp telnet._tcp daytime._tcp discard._tcp probe._tcp; do
		out=$(dig @127.0.0.1 -p "$DNS" +time=2 +tries=1 +short "_$s.svc.internal." SRV 2>&1) || true
		[ -n "$out" ] || missing+=" _$s"
	done
	[ -z "$missing" ] && echo "  in DNS:  the 7 hosted services and probe (its tcp check every 1 s)" || fail "not in DNS:$missing"
	mem
}

echo "$INSTANCES instances loaded (bench/load), $BIG of 2 KB registered through the API"
check "before"
per=$((N / PROCS)) span=$((SOURCES / PROCS))
for k in $(seq 0 $((PROCS - 1))); do
	"$WORK/streams" -web "$WEB" -n "$per" -from "127.0.0.$((2 + k * span))" -sources "$span" -hold "${HOLD}s" >"$WORK/streams.$k" 2>&1 &
	PIDS+=($!)
	CLIENTS+=($!)
done
t=$(date +%s%N)
for _ in $(seq 1200); do
	[ "$(cat "$WORK"/streams.* | grep -c '^opened')" = "$PROCS" ] && break
	sleep 0.1
done
echo "$N connections to /api/events from $SOURCES addresses (127.0.0.2-127.0.0.$((1 + SOURCES))), every 2nd stream never reading: opened in $(ms $t) ms"
cat "$WORK"/streams.* | awk '/^ +[0-9]+  /{n = $1; $1 = ""; sum[substr($0, 2)] += n} END{for (k in sum) printf "%8d  %s\n", sum[k], k}' | sort -k2
check "while they are held"

t=$(date +%s%N)
txt=$(printf '"k%d=%0100d",' $(seq 1 16) | sed 's/,$//')
for i in $(seq 100); do
	curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" \
		-d '{"name":"churn","port":'"$((20000 + i))"',"addresses":["127.0.0.9"],"txt":['"$txt"']}' "http://$WEB/api/services" || fail "registration $i"
done
echo "100 registrations of 2 KB through the API, each sent to every stream: $(ms $t) ms"
sleep 12
check "12 s later (the hosted services' ttl is 10 s, a stream's write deadline 10 s)"

wait "${CLIENTS[@]}" || true
cat "$WORK"/streams.* | grep '^after the hold' | awk -F'[:;,] *' '{print}' | sed 's/^/  /'
sleep 5
check "after the streams closed"
sleep "$AFTER"
echo "$AFTER s later (the Go runtime collects at least every 2 minutes, and returns memory to the system in the background):"
mem
if grep -q "too many open files" "$WORK/err"; then fail "serve ran out of descriptors: $(grep -c 'too many open files' "$WORK/err") lines"; fi
kill -TERM "$APID"
wait "$APID" || fail "serve exited $?"
echo "serve's log: $(wc -l <"$WORK/err") lines, $(grep -c 'level=WARN' "$WORK/err" || true) warnings, $(grep -c 'level=ERROR' "$WORK/err" || true) errors"
grep -E 'level=(WARN|ERROR)' "$WORK/err" | cut -c1-200 | sort | uniq -c | sort -rn | head -5 || true
exit $FAILED
