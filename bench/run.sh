#!/usr/bin/env bash
# bench/run.sh — annuaire's DNS beside NSD, same zone, same queries, same
# pinning, over loopback (issue 7). Prints one table; see BENCHMARKS.md.
#
#   bench/run.sh                 # side by side: 3 alternating runs each, UDP and TCP
#   bench/run.sh scale           # annuaire at 100 / 100k / 1M instances, NSD on the base zone
#   bench/run.sh echo            # echo beside socat and ncat (bench/echo.sh)
#   bench/run.sh web             # web beside nginx, with wrk (bench/web.sh)
#
# Environment: RUNS (3), SECS (10 per run), SERVER_CPU (0), PERF_CPU (1),
# ANNUAIRE (a prebuilt binary; default: build from this tree), SIZES
# ("100 100000 1000000" in scale mode), PORT_A / PORT_N (15353 / 15354).
set -euo pipefail

MODE=${1:-side}
case $MODE in echo | web) exec "$(dirname "$0")/$MODE.sh" ;; esac
RUNS=${RUNS:-3}
SECS=${SECS:-10}
SERVER_CPU=${SERVER_CPU:-0}
PERF_CPU=${PERF_CPU:-1}
PORT_A=${PORT_A:-15353}
PORT_N=${PORT_N:-15354}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/annuaire-bench.XXXXXX)
ZONE=svc.internal
PIDS=()

cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

need() {
	local missing=()
	command -v dnsperf >/dev/null || missing+=(dnsperf)
	command -v nsd >/dev/null || missing+=(nsd)
	command -v taskset >/dev/null || missing+=(util-linux)
	if ((${#missing[@]})); then
		echo "installing ${missing[*]}" >&2
		sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
		$sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}" >&2
	fi
}

# cputicks PID...: utime+stime of the processes and their threads, in ticks.
cputicks() {
	local t=0 p
	for p in "$@"; do
		[ -r /proc/$p/stat ] || continue
		# fields after the ")" of the command name: 14 and 15 are 12 and 13 here
		t=$((t + $(sed 's/.*) //' /proc/$p/stat | awk '{print $12 + $13}')))
	done
	echo $t
}

# tree PID: the process and all its descendants (NSD's first process
# becomes xfrd, its child main, and main's child the server).
tree() {
	local c
	echo "$1"
	for c in $(pgrep -P "$1" || true); do tree "$c"; done
}

waitdns() { # port
	for _ in $(seq 100); do
		kdig +retry=0 +timeout=1 @127.0.0.1 -p "$1" $ZONE SOA >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "no DNS on port $1" >&2; return 1
}

build() {
	if [ -n "${ANNUAIRE:-}" ]; then BIN=$ANNUAIRE; else
		BIN=$WORK/annuaire
		(cd "$ROOT" && go build -o "$BIN" ./cmd/annuaire)
	fi
	(cd "$ROOT" && go build -o "$WORK/load" ./bench/load)
}

# start_annuaire N: a fresh data directory with N instances, served pinned.
start_annuaire() {
	local n=$1 data=$WORK/data-$1
	rm -rf "$data"
	"$WORK/load" -data "$data" -instances "$n" >&2
	taskset -c "$SERVER_CPU" "$BIN" serve --data "$data" --dns 127.0.0.1:$PORT_A --web 127.0.0.1:0 \
		--echo '' --mail '' --telnet '' --allow-transfer 127.0.0.0/8 --log-level error >"$WORK/annuaire.log" 2>&1 &
	APID=$!
	PIDS+=("$APID")
	waitdns $PORT_A
	# resident memory once loaded, for bytes per instance
	ARSS=$(awk '/VmRSS/ {print $2}' /proc/$APID/status)
}

stop_annuaire() { kill "$APID"; wait "$APID" 2>/dev/null || true; }

start_nsd() {
	local d=$WORK/nsd
	mkdir -p "$d"
	"$BIN" export --server 127.0.0.1:$PORT_A >"$d/zone"
	cat >"$d/nsd.conf" <<EOF
server:
	ip-address: 127.0.0.1@$PORT_N
	username: ""
	chroot: ""
	zonesdir: "$d"
	pidfile: "$d/nsd.pid"
	xfrdfile: "$d/xfrd.state"
	zonelistfile: "$d/zone.list"
	logfile: "$d/nsd.log"
	database: ""
	server-count: 1
	rrl-ratelimit: 0
	verbosity: 0
	tcp-count: 1000
	tcp-timeout: 60
remote-control:
	control-enable: no
zone:
	name: $ZONE
	zonefile: "$d/zone"
EOF
	nsd-checkconf "$d/nsd.conf"
	taskset -c "$SERVER_CPU" nsd -d -c "$d/nsd.conf" &
	NPID=$!
	PIDS+=("$NPID")
	waitdns $PORT_N
}

# queries: the mix of issue 7 over the 20-host/20-SRV zone, 1,000 lines:
# 40% A, 25% SRV, 10% TXT, 10% SOA, 15% NXDOMAIN.
queries() {
	awk -v z=$ZONE 'BEGIN { srand(7); for (n = 0; n < 1000; n++) {
		i = int(rand() * 20) + 1; r = rand()
		if (r < .40) print "h" i "." z " A"
		else if (r < .65) print "_s" i "._tcp." z " SRV"
		else if (r < .75) print "inst._s" i "._tcp." z " TXT"
		else if (r < .85) print z " SOA"
		else print "nx" i "." z " A"
	} }' >"$WORK/queries"
}

# perf PORT MODE PID: one dnsperf run; prints "qps server-CPU-share lost
# dnsperf-CPU-share load": the CPU shares say which side saturated, the
# load average what else ran on the machine.
perf() {
	local port=$1 mode=$2 pid=$3
	local before after out qps lost t0 t1 hz ptick load
	hz=$(getconf CLK_TCK)
	load=$(cut -d' ' -f1 /proc/loadavg)
	before=$(cputicks $(tree "$pid")); t0=$(date +%s.%N)
	# the shell's cutime+cstime after wait is dnsperf's CPU time
	out=$(taskset -c "$PERF_CPU" sh -c 'dnsperf "$@"; s=$(cat /proc/$$/stat); echo "STAT ${s##*) }"' sh \
		-s 127.0.0.1 -p "$port" -m "$mode" -d "$WORK/queries" -l "$SECS" -c 8 -T 1 -q 500 2>&1)
	after=$(cputicks $(tree "$pid")); t1=$(date +%s.%N)
	qps=$(awk '/Queries per second/ {print $4}' <<<"$out")
	lost=$(awk '/Queries lost/ {print $3}' <<<"$out")
	ptick=$(awk '/^STAT/ {print $15 + $16}' <<<"$out")
	awk -v q="$qps" -v a="$before" -v b="$after" -v p="$ptick" -v t0="$t0" -v t1="$t1" -v hz="$hz" -v l="${lost:-0}" -v load="$load" \
		'BEGIN { printf "%s %.3f %s %.3f %s\n", q, (b - a) / hz / (t1 - t0), l, p / hz / (t1 - t0), load }'
}

median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

# bench NAME PORT PID: RUNS runs of UDP then TCP, medians into globals.
declare -A UDP CPS TCP LOST RSS SCPU PCPU TSCPU TPCPU
measure() {
	local name=$1 port=$2 pid=$3 i r
	for i in $(seq "$RUNS"); do
		r=$(perf "$port" udp "$pid")
		echo "  $name udp run $i: $r (q/s, server CPU share, lost, dnsperf CPU share, load)" >&2
		echo "$r" >>"$WORK/$name.udp"
		r=$(perf "$port" tcp "$pid")
		echo "  $name tcp run $i: $r" >&2
		echo "$r" >>"$WORK/$name.tcp"
	done
}

summarise() { # name
	local n=$1
	UDP[$n]=$(awk '{print $1}' "$WORK/$n.udp" | median)
	CPS[$n]=$(awk '$2 > 0 {print $1 / $2}' "$WORK/$n.udp" | median)
	TCP[$n]=$(awk '{print $1}' "$WORK/$n.tcp" | median)
	LOST[$n]=$(awk '{s += $3} END {print s + 0}' "$WORK/$n.udp")
	SCPU[$n]=$(awk '{print $2}' "$WORK/$n.udp" | median)
	PCPU[$n]=$(awk '{print $4}' "$WORK/$n.udp" | median)
	TSCPU[$n]=$(awk '{print $2}' "$WORK/$n.tcp" | median)
	TPCPU[$n]=$(awk '{print $4}' "$WORK/$n.tcp" | median)
}

row() { # label name
	printf '| %-28s | %10.0f | %10.0f | %10.0f | %6s | %.2f / %.2f | %.2f / %.2f |\n' "$1" "${UDP[$2]}" "${CPS[$2]}" "${TCP[$2]}" "${LOST[$2]}" \
		"${SCPU[$2]}" "${PCPU[$2]}" "${TSCPU[$2]}" "${TPCPU[$2]}"
}

header() {
	echo "| server (server on CPU $SERVER_CPU, dnsperf on CPU $PERF_CPU; medians of $RUNS × ${SECS}s) | UDP q/s | q per server CPU-s | TCP q/s | UDP lost | UDP CPU share server / dnsperf | TCP CPU share server / dnsperf |"
	echo "|---|---|---|---|---|---|---|"
}

ratio() { # name-a name-b
	printf '| %-28s | %10.2f | %10.2f | %10.2f | | | |\n' "ratio $1/$2" \
		"$(awk -v a="${UDP[$1]}" -v b="${UDP[$2]}" 'BEGIN {print a / b}')" \
		"$(awk -v a="${CPS[$1]}" -v b="${CPS[$2]}" 'BEGIN {print a / b}')" \
		"$(awk -v a="${TCP[$1]}" -v b="${TCP[$2]}" 'BEGIN {print a / b}')"
}

need
build
queries
echo "machine: $(nproc) CPUs, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo), $(uname -r); $(nsd -v 2>&1 | head -1); dnsperf $(dnsperf -h 2>&1 | awk '/^Version/ {print $2}')" >&2

case $MODE in
side)
	start_annuaire 100
	start_nsd
	# alternate: annuaire run, NSD run, so drift hits both alike
	for i in $(seq "$RUNS"); do
		RUNS=1 measure annuaire $PORT_A "$APID"
		RUNS=1 measure nsd $PORT_N "$NPID"
	done
	summarise annuaire; summarise nsd
	header
	row "NSD $(nsd -v 2>&1 | awk '/version/ {print $3; exit}')" nsd
	row "annuaire" annuaire
	ratio annuaire nsd
	;;
scale)
	SIZES=${SIZES:-100 100000 1000000}
	first=""
	for n in $SIZES; do
		echo "== $n instances" >&2
		t0=$(date +%s.%N)
		start_annuaire "$n"
		echo "  loaded and serving in $(awk -v t0="$t0" -v t1="$(date +%s.%N)" 'BEGIN {printf "%.1f", t1 - t0}') s, RSS $((ARSS / 1024)) MiB" >&2
		if [ -z "$first" ]; then
			start_nsd # the base zone: NSD's figures are the yardstick
			measure nsd $PORT_N "$NPID"
			first=$n
		fi
		measure "a$n" $PORT_A "$APID"
		RSS[$n]=$ARSS
		stop_annuaire
	done
	summarise nsd
	header
	row "NSD (base zone)" nsd
	for n in $SIZES; do
		summarise "a$n"
		row "annuaire, $n instances" "a$n"
	done
	for n in $SIZES; do ratio "a$n" "a$first"; done
	echo
	echo "| instances | annuaire RSS (MiB) | RSS growth per instance over the $first run (bytes) |"
	echo "|---|---|---|"
	for n in $SIZES; do
		printf '| %s | %d | %s |\n' "$n" $((RSS[$n] / 1024)) \
			"$(awk -v a="${RSS[$n]}" -v b="${RSS[$first]}" -v n="$n" -v f="$first" 'BEGIN { if (n == f) print "-"; else printf "%.0f", (a - b) * 1024 / (n - f) }')"
	done
	;;
*)
	echo "usage: $0 [side|scale]" >&2; exit 2 ;;
esac
