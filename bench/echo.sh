#!/usr/bin/env bash
# bench/echo.sh — annuaire's echo service beside socat and ncat over
# loopback (issue 7): MB/s with 1 and 50 connections, connections/s.
# Server on CPU 0, load (bench/echoload) on CPU 1, runs alternate between
# servers, medians. Prints one table; see BENCHMARKS.md.
#
# Environment: RUNS (3), SECS (3 per run), SERVER_CPU (0), LOAD_CPU (1),
# CPS_LOOPS (4 parallel connect/echo/close loops), ANNUAIRE (prebuilt binary).
set -euo pipefail
RUNS=${RUNS:-3}
SECS=${SECS:-3}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
CPS_LOOPS=${CPS_LOOPS:-4}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/annuaire-echo.XXXXXX)
PIDS=()
cleanup() {
	local p c
	for p in "${PIDS[@]}"; do
		for c in $(pgrep -P "$p" || true); do kill "$c" 2>/dev/null || true; done
		kill "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

missing=()
command -v socat >/dev/null || missing+=(socat)
command -v ncat >/dev/null || missing+=(ncat)
command -v taskset >/dev/null || missing+=(util-linux)
if ((${#missing[@]})); then
	sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}" >&2
fi
if [ -n "${ANNUAIRE:-}" ]; then BIN=$ANNUAIRE; else
	BIN=$WORK/annuaire
	(cd "$ROOT" && go build -o "$BIN" ./cmd/annuaire)
fi
(cd "$ROOT" && go build -o "$WORK/echoload" ./bench/echoload)

# name port command...: the servers, each on its own loopback port
declare -A PORT
start() {
	local name=$1 port=$2; shift 2
	taskset -c "$SERVER_CPU" "$@" >"$WORK/$name.log" 2>&1 &
	PIDS+=($!)
	PORT[$name]=$port
	for _ in $(seq 50); do ss -ltn "sport = :$port" | grep -q LISTEN && return 0; sleep 0.1; done
	echo "$name did not listen on $port" >&2; return 1
}
a() { # mode port
	start "annuaire-$1" "$2" "$BIN" serve --data "$WORK/data-$1" --dns 127.0.0.1:0 --web 127.0.0.1:0 \
		--mail '' --telnet '' --echo 127.0.0.1:$2 --echo-mode "$1" --log-level error
}
a concurrent 17107
a poll 17108
a iterative 17109
start socat-exec-cat 17110 socat TCP-LISTEN:17110,bind=127.0.0.1,fork,reuseaddr EXEC:cat
start socat-pipe 17111 socat TCP-LISTEN:17111,bind=127.0.0.1,fork,reuseaddr PIPE
start ncat-exec-cat 17112 ncat -l -k 127.0.0.1 17112 --exec /bin/cat
SERVERS="annuaire-concurrent annuaire-poll annuaire-iterative socat-exec-cat socat-pipe ncat-exec-cat"
echo "machine: $(nproc) CPUs, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo), $(uname -r); $(socat -V | awk '/socat version/ {print "socat", $3}'); $(ncat --version 2>&1 | awk '{print "ncat", $3}')" >&2

load() { taskset -c "$LOAD_CPU" timeout 60 "$WORK/echoload" -addr 127.0.0.1:${PORT[$1]} -secs "$SECS" "${@:2}" 2>>"$WORK/errors" || echo nan; }
for i in $(seq "$RUNS"); do
	for s in $SERVERS; do
		l=$(cut -d' ' -f1 /proc/loadavg)
		# connections/s first: a server left wedged by a stream is not measured twice
		cps=$(load "$s" -cps -conns "$CPS_LOOPS")
		case $s in
		# ncat --exec relays socket and pipes in one blocking loop: with a
		# stream both ways it deadlocks once the pipes are full (write
		# timeouts), and the wedged children fill its 100 connection slots.
		ncat-*) one=-; fifty=- ;;
		# one client at a time: 50 connections would wait in the queue
		annuaire-iterative) one=$(load "$s" -conns 1); fifty=- ;;
		*) one=$(load "$s" -conns 1); fifty=$(load "$s" -conns 50) ;;
		esac
		echo "  $s run $i: $one MB/s (1 conn), $fifty MB/s (50), $cps conn/s, load $l" >&2
		echo "$one $fifty $cps" >>"$WORK/$s"
	done
done
[ -s "$WORK/errors" ] && sed 's/^/  /' "$WORK/errors" >&2

median() { { grep -v -e '^-$' -e nan || true; } | sort -g | awk '{v[NR] = $1} END {if (NR) print v[int((NR + 1) / 2)]; else print "-"}'; }
declare -A M
for s in $SERVERS; do for c in 1 2 3; do M[$s,$c]=$(awk -v c=$c '{print $c}' "$WORK/$s" | median); done; done
r() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }
echo "| echo server (server on CPU $SERVER_CPU, echoload on CPU $LOAD_CPU; medians of $RUNS × ${SECS}s) | MB/s, 1 conn | MB/s, 50 conns | conn/s ($CPS_LOOPS loops) | ratios annuaire (concurrent) / this: 1 conn, 50, conn/s |"
echo "|---|---|---|---|---|"
for s in $SERVERS; do
	printf '| %s | %s | %s | %s | %s / %s / %s |\n' "$s" "${M[$s,1]}" "${M[$s,2]}" "${M[$s,3]}" \
		"$(r "${M[annuaire-concurrent,1]}" "${M[$s,1]}")" "$(r "${M[annuaire-concurrent,2]}" "${M[$s,2]}")" "$(r "${M[annuaire-concurrent,3]}" "${M[$s,3]}")"
done
