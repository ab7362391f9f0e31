#!/usr/bin/env bash
# bench/run.sh — annuaire's DNS beside NSD and Knot, same zone, same
# queries, same pinning, over loopback (issues 7 and 19). Prints tables;
# see BENCHMARKS.md.
#
#   bench/run.sh                 # side by side: 3 rounds, each server once per round in rotating order, UDP and TCP
#   bench/run.sh scale           # annuaire at 100 / 100k / 1M instances, NSD on the base zone, per-run ratios to the first size
#   bench/run.sh updates         # annuaire while bench/churn writes through the API, and without
#   bench/run.sh echo            # echo beside socat and ncat (bench/echo.sh)
#   bench/run.sh web             # web beside nginx, with wrk (bench/web.sh)
#   bench/run.sh check           # checks the arithmetic of queries per server CPU-second and of the per-round ratios
#
# Environment: RUNS (3), SECS (10 per run), CLIENTS (dnsperf's -c, 20),
# SERVER_CPU (0), PERF_CPU (1),
# ANNUAIRE (a prebuilt binary; default: build from this tree), BASELINE
# (in side and updates modes, another annuaire binary measured in the same
# rounds as "before": the before/after of a change, side by side), SIZES
# ("100 100000 1000000" in scale mode), SIZE (instances in updates mode,
# 100), CHURN_RATE / CHURN_WORKERS (write requests/s and concurrency of
# bench/churn in updates mode, 1000 / 16), PROTOS (updates mode's
# transports, "udp tcp"), PORT_A / PORT_N / PORT_W / PORT_K
# (annuaire DNS / NSD / annuaire web API / Knot, 15353 / 15354 / 15355 /
# 15356; PORT_B and PORT_B+1 BASELINE's DNS and web, 15357 / 15358; scale
# mode puts its
# k-th size on PORT_A+10k and PORT_W+10k), TMPDIR (/tmp: where the data
# directories go).
set -euo pipefail

MODE=${1:-side}
case $MODE in echo | web) exec "$(dirname "$0")/$MODE.sh" ;; esac
RUNS=${RUNS:-3}
SECS=${SECS:-10}
SERVER_CPU=${SERVER_CPU:-0}
PERF_CPU=${PERF_CPU:-1}
PORT_A=${PORT_A:-15353}
PORT_N=${PORT_N:-15354}
PORT_W=${PORT_W:-15355}
PORT_K=${PORT_K:-15356}
PORT_B=${PORT_B:-15357}
CLIENTS=${CLIENTS:-20}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# TMPDIR=/dev/shm puts the data directories on tmpfs, where the journal's
# fsync costs nothing: a disk's fsync is part of what updates mode measures.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/annuaire-bench.XXXXXX")
ZONE=svc.internal
PIDS=()
SERVERS=() # every server started, for the CPU the idle ones take during a run

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
	command -v kdig >/dev/null || missing+=(knot-dnsutils)
	[ "$MODE" != side ] || command -v knotd >/dev/null || missing+=(knot)
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
		[ -r "/proc/$p/stat" ] || continue
		# fields after the ")" of the command name: 14 and 15 are 12 and 13 here
		t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
	done
	echo $t
}

# switches PID...: context switches of the processes and their threads,
# voluntary and not: a server that sleeps and wakes for every few
# datagrams pays for it in CPU, so switches per query say why its figure
# moved.
switches() {
	local t=0 p
	for p in "$@"; do
		t=$((t + $(cat /proc/"$p"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}')))
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
	[ "$MODE" != updates ] || (cd "$ROOT" && go build -o "$WORK/churn" ./bench/churn)
}

# start_annuaire N [DNS-PORT [WEB-PORT]]: a fresh data directory (ADATA)
# with N instances, served pinned; the web API on a fixed port so that
# bench/churn can write to it, its token in ADATA/token.
start_annuaire() {
	local n=$1 dns=${2:-$PORT_A} web=${3:-$PORT_W}
	ADATA=$WORK/data-$n${4:-}
	rm -rf "$ADATA"
	"$WORK/load" -data "$ADATA" -instances "$n" >&2
	taskset -c "$SERVER_CPU" "$BIN" serve --data "$ADATA" --dns "127.0.0.1:$dns" --web "127.0.0.1:$web" \
		--echo '' --mail '' --telnet '' --daytime '' --discard '' --allow-transfer 127.0.0.0/8 --log-level error >"$WORK/annuaire-$n${4:-}.log" 2>&1 &
	APID=$!
	PIDS+=("$APID")
	SERVERS+=("$APID")
	waitdns "$dns"
	# resident memory once loaded, for bytes per instance
	ARSS=$(awk '/VmRSS/ {print $2}' /proc/$APID/status)
}

# export_zone PORT: the zone of the annuaire on PORT, by AXFR, into
# WORK/zone: what NSD and Knot serve.
export_zone() {
	"$BIN" export --server "127.0.0.1:$1" >"$WORK/zone"
}

start_nsd() { # [PORT of the annuaire whose zone NSD serves]
	local d=$WORK/nsd
	mkdir -p "$d"
	export_zone "${1:-$PORT_A}"
	cp "$WORK/zone" "$d/zone"
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
	SERVERS+=("$NPID")
	waitdns "$PORT_N"
}

# start_knot: Knot serving WORK/zone (start_nsd exports it) with one UDP
# and one TCP worker, as NSD's server-count 1; no journal, no zone file
# written back, no RRL (a module Knot loads only when told).
start_knot() {
	local d=$WORK/knot
	mkdir -p "$d/db"
	cp "$WORK/zone" "$d/zone"
	cat >"$d/knot.conf" <<EOF
server:
    rundir: "$d"
    listen: 127.0.0.1@$PORT_K
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
    tcp-max-clients: 1000
    tcp-idle-timeout: 60
database:
    storage: "$d/db"
control:
    listen: "$d/knot.sock"
log:
  - target: "$d/knot.log"
    any: warning
zone:
  - domain: $ZONE
    file: "$d/zone"
    storage: "$d"
    zonefile-sync: -1
    journal-content: none
EOF
	knotc -c "$d/knot.conf" conf-check >&2
	taskset -c "$SERVER_CPU" knotd -c "$d/knot.conf" &
	KPID=$!
	PIDS+=("$KPID")
	SERVERS+=("$KPID")
	waitdns "$PORT_K"
}

# queries: the mix of issue 19 over the 20-host/20-SRV zone, 1,000 lines:
# 40% A, 30% SRV, 5% instance TXT, 5% SOA, 20% NXDOMAIN (issue 7's was
# 40/25/10/10/15).
queries() {
	awk -v z=$ZONE 'BEGIN { srand(7); for (n = 0; n < 1000; n++) {
		i = int(rand() * 20) + 1; r = rand()
		if (r < .40) print "h" i "." z " A"
		else if (r < .70) print "_s" i "._tcp." z " SRV"
		else if (r < .75) print "inst._s" i "._tcp." z " TXT"
		else if (r < .80) print z " SOA"
		else print "nx" i "." z " A"
	} }' >"$WORK/queries"
}

# idle PID: the servers other than PID and their descendants: in scale
# mode they sit on the same CPU, and what they take is printed per run.
idle() {
	local p
	for p in "${SERVERS[@]}"; do [ "$p" = "$1" ] || tree "$p"; done
}

# perf PORT MODE PID: one dnsperf run; prints "qps server-CPU-share lost
# dnsperf-CPU-share load idle-servers-CPU-share": the CPU shares say which
# side saturated, the load average what else ran on the machine.
#
# The shares are of dnsperf's run time (its "Run time (s)", over which it
# counts its queries per second), not of the wall time around it, so that
# queries per server CPU-second (qps / share) is the queries answered over
# the CPU-seconds the server took. After the run, dnsperf waits for the
# queries still unanswered until they time out (-t, 5 s). Knot, whose
# socket keeps the default 208 KiB of receive buffer, loses some 300 of
# dnsperf's first burst (as many in a 2 s run as in a 5 s one) and more
# later (584 in a 10 s run): when some of those were sent near the end,
# it sat idle up to 5 s more of the wall time, and dividing by the wall
# time made its figure up to (SECS + 5) / SECS times too high. See
# check_perf.
perf() {
	local port=$1 mode=$2 pid=$3
	local before after out qps lost rt t0 t1 hz ptick load others ibefore iafter sw0 sw1
	hz=$(getconf CLK_TCK)
	load=$(cut -d' ' -f1 /proc/loadavg)
	others=$(idle "$pid")
	# shellcheck disable=SC2086 # word splitting wanted: a list of PIDs
	ibefore=$(cputicks $others)
	# shellcheck disable=SC2046 # word splitting wanted: a list of PIDs
	before=$(cputicks $(tree "$pid")); t0=$(date +%s.%N)
	# shellcheck disable=SC2046
	sw0=$(switches $(tree "$pid"))
	# the shell's cutime+cstime after wait is dnsperf's CPU time
	# shellcheck disable=SC2016 # $@ and $$ are the inner sh's
	out=$(taskset -c "$PERF_CPU" sh -c 'dnsperf "$@"; s=$(cat /proc/$$/stat); echo "STAT ${s##*) }"' sh \
		-s 127.0.0.1 -p "$port" -m "$mode" -d "$WORK/queries" -l "$SECS" -c "$CLIENTS" -T 1 -q 500 2>&1)
	# shellcheck disable=SC2046,SC2086
	after=$(cputicks $(tree "$pid")); t1=$(date +%s.%N)
	# shellcheck disable=SC2046
	sw1=$(switches $(tree "$pid"))
	# shellcheck disable=SC2086
	iafter=$(cputicks $others)
	read -r qps lost rt < <(dnsperf_fields <<<"$out")
	ptick=$(awk '/^STAT/ {print $15 + $16}' <<<"$out")
	# not a field of the line (the modes read its fields by position):
	# measure prints it beside
	awk -v s=$((sw1 - sw0)) -v rt="$rt" -v t0="$t0" -v t1="$t1" '/Queries completed/ {q = $3} /Average Latency/ {avg = $4; mx = $8}
		END {sub(/\)/, "", mx); printf "%.3f context switches per query, dnsperf latency %s s average, %s max; run time %s s of %.2f s\n", (q > 0 ? s / q : 0), avg, mx, rt, t1 - t0}' \
		<<<"$out" >"$WORK/switches"
	shares "$qps" "$rt" "$(awk -v t0="$t0" -v t1="$t1" 'BEGIN {print t1 - t0}')" "$((after - before))" "$ptick" "$hz" "$lost" "$load" "$((iafter - ibefore))"
}

# dnsperf_fields: "qps lost run-time" from dnsperf's statistics.
dnsperf_fields() {
	awk '/Queries per second/ {q = $4} /Queries lost/ {l = $3} /Run time \(s\)/ {rt = $4} END {print q, l + 0, rt}'
}

# shares QPS RUN-TIME WALL-TIME SERVER-TICKS DNSPERF-TICKS HZ LOST LOAD
# IDLE-TICKS: perf's line, the servers' CPU shares of the run time.
# dnsperf's share stays one of the wall time: while it waits for the
# queries a server lost, it spins (up to 1.7 times the run time's
# CPU-seconds in all), so its share of the run time says nothing of its
# load during the run.
shares() {
	awk -v q="$1" -v rt="$2" -v d="$3" -v s="$4" -v p="$5" -v hz="$6" -v l="$7" -v load="$8" -v i="$9" \
		'BEGIN { printf "%s %.3f %s %.3f %s %.3f\n", q, s / hz / rt, l, p / hz / d, load, i / hz / rt }'
}

# check_perf: the figure a run with queries left unanswered at its end
# must give, from a 5 s run of Knot beside dnsperf on 5 Dec 2026 at 08:58
# (286 lost, dnsperf's wall time 7.91 s, 209 ticks of the server's CPU,
# 2.093 s by its threads' schedstat): 511,390 queries over 2.09
# CPU-seconds are 245k per CPU-second, not the 387k that the shares of
# the wall time gave.
check_perf() {
	local line qps lost rt
	read -r qps lost rt < <(dnsperf_fields <<'EOF'
Statistics:

  Queries sent:         511676
  Queries completed:    511390 (99.94%)
  Queries lost:         286 (0.06%)

  Response codes:       NOERROR 397866 (77.80%), NXDOMAIN 113524 (22.20%)
  Average packet size:  request 35, response 70
  Run time (s):         5.000317
  Queries per second:   102271.515986

  Average Latency (s):  0.001232 (min 0.000020, max 0.032767)
  Latency StdDev (s):   0.001640
EOF
	)
	line=$(shares "$qps" "$rt" 7.91 209 0 100 "$lost" 1.0 0)
	awk -v l="$line" 'BEGIN { split(l, f, " "); v = f[1] / f[2]
		if (v < 243000 || v > 247000) { printf "check_perf: %.0f queries per server CPU-second, want 245k (perf line: %s)\n", v, l; exit 1 }
		printf "check_perf: %.0f queries per server CPU-second: ok\n", v }'
}

# check_rounds: the per-round ratios of a real run (run 2 of 13:25 on 5 Dec
# 2026, annuaire's and Knot's raw lines), both figures: per server
# CPU-second the medians BENCHMARKS.md gives for that run (UDP 1.563,
# TCP 4.351); queries/s 1.114 and 2.569, where the ratios of the medians
# are 0.99 and 2.65.
check_rounds() {
	local got want
	cat >"$WORK/annuaire.udp" <<'EOF'
127460.949644 0.434 0 0.984 2.80 0.000
142778.729379 0.455 0 0.987 2.68 0.000
103354.871431 0.380 0 0.984 2.85 0.000
106711.982651 0.386 0 0.984 2.70 0.000
148762.297334 0.457 0 0.986 2.46 0.000
EOF
	cat >"$WORK/annuaire.tcp" <<'EOF'
220710.942690 0.496 0 0.984 2.55 0.001
239837.861749 0.659 0 0.982 2.66 0.000
184439.101072 0.463 0 0.981 2.72 0.000
182782.199944 0.459 0 0.984 2.60 0.001
235910.062705 0.533 0 0.984 2.39 0.001
EOF
	cat >"$WORK/knot.udp" <<'EOF'
114435.183178 0.609 488 0.985 2.62 0.000
93510.220093 0.585 488 0.985 2.86 0.000
153705.764402 0.649 525 0.985 2.71 0.001
133942.555979 0.624 520 0.988 2.56 0.001
128535.930772 0.627 519 0.987 2.69 0.001
EOF
	cat >"$WORK/knot.tcp" <<'EOF'
83354.772241 0.815 0 0.982 2.60 0.001
62485.705811 0.615 0 0.984 2.66 0.001
71797.575979 0.993 0 0.978 2.54 0.000
110036.220064 0.988 0 0.983 2.36 0.000
94746.550568 0.988 0 0.981 2.46 0.001
EOF
	for want in 'cps|| **median** | | **1.563** | **4.351** |' 'qps|| **median** | | **1.114** | **2.569** |'; do
		got=$(RUNS=5 rounds "${want%%|*}" annuaire knot | tail -1)
		if [ "$got" != "${want#*|}" ]; then
			printf 'check_rounds: %s per round gave\n%s\nwant\n%s\n' "${want%%|*}" "$got" "${want#*|}"
			return 1
		fi
		echo "check_rounds: ${want%%|*} per round, medians $(awk -F"[*][*]" "{print \$4, \$6}" <<<"$got"): ok"
	done
}

# churnperf WEB-PORT DATA PORT MODE PID: perf with bench/churn writing to
# the API of the annuaire on WEB-PORT (its token in DATA/token) all along, on dnsperf's CPU so that the server's CPU is not shared with
# the load; churn starts a second early so that it is at rate when dnsperf
# starts, and stops (SIGTERM) when dnsperf ends. Prints perf's fields then
# "writes/s write-errors p50-ms p99-ms churn-CPU-share missed-slots".
churnperf() {
	local r cpid c0 c1 t0 t1 hz web=$1 data=$2
	shift 2
	hz=$(getconf CLK_TCK)
	# -duration only bounds a churn left behind by an interrupted run
	taskset -c "$PERF_CPU" "$WORK/churn" -api "http://127.0.0.1:$web" -token-file "$data/token" \
		-rate "$CHURN_RATE" -workers "$CHURN_WORKERS" -duration "$((SECS + 60))s" >"$WORK/churn.out" 2>"$WORK/churn.err" &
	cpid=$!
	sleep 1
	c0=$(cputicks "$cpid"); t0=$(date +%s.%N)
	r=$(perf "$@")
	c1=$(cputicks "$cpid"); t1=$(date +%s.%N)
	kill -TERM "$cpid"
	wait "$cpid" || { echo "churn failed: $(cat "$WORK/churn.err")" >&2; return 1; }
	sed 's/^/    /' "$WORK/churn.out" "$WORK/churn.err" >&2
	# fields of churn's line by the word after or before them
	awk -v r="$r" -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$hz" '/^churn:/ {
		for (i = 1; i <= NF; i++) {
			if ($i == "errors,") e = $(i - 1); if ($i == "missed") m = $(i - 1)
			if ($i == "p50") p50 = $(i + 1); if ($i == "p99") p99 = $(i + 1)
		}
		printf "%s %s %s %s %s %.3f %s\n", r, $2, e, p50, p99, (c1 - c0) / hz / (t1 - t0), m
	}' "$WORK/churn.out"
}

median() { sort -g | awk '{v[NR] = $1} END {print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# bench NAME PORT PID: RUNS runs of UDP then TCP, medians into globals.
declare -A UDP CPS TCP TCPS LOST RSS SCPU PCPU TSCPU TPCPU
measure() {
	local name=$1 port=$2 pid=$3 i r
	for i in $(seq "$RUNS"); do
		r=$(perf "$port" udp "$pid")
		echo "  $name udp run $i: $r (q/s, server CPU share, lost, dnsperf CPU share, load, idle servers CPU share); $(cat "$WORK/switches")" >&2
		echo "$r" >>"$WORK/$name.udp"
		r=$(perf "$port" tcp "$pid")
		echo "  $name tcp run $i: $r; $(cat "$WORK/switches")" >&2
		echo "$r" >>"$WORK/$name.tcp"
	done
}

summarise() { # name
	local n=$1
	UDP[$n]=$(awk '{print $1}' "$WORK/$n.udp" | median)
	CPS[$n]=$(awk '$2 > 0 {print $1 / $2}' "$WORK/$n.udp" | median)
	TCP[$n]=$(awk '{print $1}' "$WORK/$n.tcp" | median)
	TCPS[$n]=$(awk '$2 > 0 {print $1 / $2}' "$WORK/$n.tcp" | median)
	LOST[$n]=$(awk '{s += $3} END {print s + 0}' "$WORK/$n.udp")
	SCPU[$n]=$(awk '{print $2}' "$WORK/$n.udp" | median)
	PCPU[$n]=$(awk '{print $4}' "$WORK/$n.udp" | median)
	TSCPU[$n]=$(awk '{print $2}' "$WORK/$n.tcp" | median)
	TPCPU[$n]=$(awk '{print $4}' "$WORK/$n.tcp" | median)
}

row() { # label name
	printf '| %-28s | %10.0f | %10.0f | %10.0f | %10.0f | %6s | %.2f / %.2f | %.2f / %.2f |\n' "$1" "${UDP[$2]}" "${CPS[$2]}" "${TCP[$2]}" "${TCPS[$2]}" "${LOST[$2]}" \
		"${SCPU[$2]}" "${PCPU[$2]}" "${TSCPU[$2]}" "${TPCPU[$2]}"
}

header() {
	echo "| server (server on CPU $SERVER_CPU, dnsperf -c $CLIENTS on CPU $PERF_CPU; medians of $RUNS × ${SECS}s) | UDP q/s | UDP q per server CPU-s | TCP q/s | TCP q per server CPU-s | UDP lost | UDP CPU share server / dnsperf | TCP CPU share server / dnsperf |"
	echo "|---|---|---|---|---|---|---|---|"
}

ratio() { # name-a name-b: the ratios of the medians
	printf '| %-28s | %10.2f | %10.2f | %10.2f | %10.2f | | | |\n' "ratio $1/$2" \
		"$(awk -v a="${UDP[$1]}" -v b="${UDP[$2]}" 'BEGIN {print a / b}')" \
		"$(awk -v a="${CPS[$1]}" -v b="${CPS[$2]}" 'BEGIN {print a / b}')" \
		"$(awk -v a="${TCP[$1]}" -v b="${TCP[$2]}" 'BEGIN {print a / b}')" \
		"$(awk -v a="${TCPS[$1]}" -v b="${TCPS[$2]}" 'BEGIN {print a / b}')"
}

# roundratio FIGURE A-FILE B-FILE: per round (line i of two raw files),
# A's figure over B's: "cps" queries per server CPU-second, "qps" queries/s.
roundratio() {
	paste -d' ' "$2" "$3" | awk -v f="$1" '{
		if (f == "qps") print ($7 > 0) ? $1 / $7 : "nan"
		else print ($2 > 0 && $8 > 0) ? ($1 / $2) / ($7 / $8) : "nan" }'
}

# rounds [FIGURE] A B...: per round (line i of each server's raw files),
# the ratios of A's q per server CPU-second (FIGURE cps, the default) or
# of its queries/s (qps) to each other server's, UDP and TCP, and their
# medians: ratios within a round, minutes apart at most, drift less than
# ratios of medians taken over the whole run. dnsperf's own rate, which
# is the servers' queries/s, moves by up to 30% from one minute to the
# next on a shared guest: per round, each server is measured in the
# same stretch of it.
rounds() {
	local f=cps label="per CPU-s" a b m i
	case $1 in cps | qps) f=$1; shift ;; esac
	[ "$f" = cps ] || label="q/s"
	a=$1
	shift
	printf '| round | load at its start |'
	for b in "$@"; do printf ' UDP %s/%s %s | TCP %s/%s %s |' "$a" "$b" "$label" "$a" "$b" "$label"; done
	echo
	printf '|---|---|'
	for b in "$@"; do printf -- '---|---|'; done
	echo
	for m in udp tcp; do
		for b in "$@"; do
			roundratio "$f" "$WORK/$a.$m" "$WORK/$b.$m" >"$WORK/ratio.$b.$m"
		done
	done
	for i in $(seq "$RUNS"); do
		printf '| %d | %s |' "$i" "$(sed -n "${i}p" "$WORK/$a.udp" | awk '{print $5}')"
		for b in "$@"; do
			printf ' %.3f | %.3f |' "$(sed -n "${i}p" "$WORK/ratio.$b.udp")" "$(sed -n "${i}p" "$WORK/ratio.$b.tcp")"
		done
		echo
	done
	printf '| **median** | |'
	for b in "$@"; do
		printf ' **%.3f** | **%.3f** |' "$(median <"$WORK/ratio.$b.udp")" "$(median <"$WORK/ratio.$b.tcp")"
	done
	echo
}

# col FILE FIELD: the median of one field of a raw file.
col() { awk -v f="$2" '{print $f}' "$1" | median; }

# updates_table NAME LABEL: one row per transport of the annuaire NAME.
# The ratio is the median of the ratios of each run pair (adjacent in
# time), steadier than a ratio of medians on a drifting machine; a pair
# line is the quiet run's 6 fields then the churn run's 12.
updates_table() {
	local n=$1 label=$2 m q c
	for m in $PROTOS; do
		q=$WORK/$n.quiet.$m c=$WORK/$n.churn.$m
		printf '| %s | %.0f | %.0f | %.3f | %.0f | %.0f | %.3f | %.0f | %d / %d | %.2f / %.2f | %d / %d | %.2f / %.2f | %.2f / %.2f / %.2f |\n' "${m^^}$label" \
			"$(col "$q" 1)" "$(col "$c" 1)" "$(awk '{print $7 / $1}' "$WORK/$n.pairs.$m" | median)" \
			"$(awk '$2 > 0 {print $1 / $2}' "$q" | median)" "$(awk '$2 > 0 {print $1 / $2}' "$c" | median)" \
			"$(awk '$2 > 0 && $8 > 0 {print ($7 / $8) / ($1 / $2)}' "$WORK/$n.pairs.$m" | median)" \
			"$(col "$c" 7)" "$(awk '{s += $8} END {print s + 0}' "$c")" "$(awk '{s += $12} END {print s + 0}' "$c")" "$(col "$c" 9)" "$(col "$c" 10)" \
			"$(awk '{s += $3} END {print s + 0}' "$q")" "$(awk '{s += $3} END {print s + 0}' "$c")" \
			"$(col "$q" 2)" "$(col "$q" 4)" "$(col "$c" 2)" "$(col "$c" 4)" "$(col "$c" 11)"
	done
}

[ "$MODE" != check ] || { check_perf && check_rounds; exit; }
need
build
queries
echo "machine: $(nproc) CPUs, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo), $(uname -r); $(nsd -v 2>&1 | head -1); dnsperf $(dnsperf -h 2>&1 | awk '/^Version/ {print $2}')" >&2

case $MODE in
side)
	start_annuaire 100
	start_nsd
	start_knot
	echo "knotd $(knotd --version | awk '{print $NF}')" >&2
	# Each round measures every server once, UDP then TCP, starting one
	# place further along the list each time, so that drift and order
	# hit all alike.
	read -ra order <<<"annuaire nsd knot"
	declare -A SPORT=([annuaire]=$PORT_A [nsd]=$PORT_N [knot]=$PORT_K) SPID=([annuaire]=$APID [nsd]=$NPID [knot]=$KPID)
	if [ -n "${BASELINE:-}" ]; then
		after=$BIN BIN=$BASELINE
		start_annuaire 100 "$PORT_B" $((PORT_B + 1)) -before
		BIN=$after SPORT[before]=$PORT_B SPID[before]=$APID
		order+=(before)
	fi
	for i in $(seq "$RUNS"); do
		echo "== round $i" >&2
		for j in $(seq 0 $((${#order[@]} - 1))); do
			n=${order[$(((i - 1 + j) % ${#order[@]}))]}
			RUNS=1 measure "$n" "${SPORT[$n]}" "${SPID[$n]}"
		done
	done
	for n in "${order[@]}"; do summarise "$n"; done
	header
	row "NSD $(nsd -v 2>&1 | awk '/version/ {print $3; exit}')" nsd
	row "Knot $(knotd --version | awk '{print $NF}')" knot
	[ -z "${BASELINE:-}" ] || row "annuaire before (BASELINE)" before
	row "annuaire" annuaire
	ratio annuaire knot
	ratio annuaire nsd
	[ -z "${BASELINE:-}" ] || ratio annuaire before
	echo
	rounds annuaire knot nsd "${order[@]:3}"
	echo
	rounds qps annuaire knot nsd "${order[@]:3}"
	;;
scale)
	SIZES=${SIZES:-100 100000 1000000}
	# Load every size first, each on its own ports, all pinned to the
	# server CPU; then each run measures every size once in turn, so that
	# the machine's drift hits all sizes alike instead of one size per
	# stretch of time. Only the queried server works; the others are idle.
	declare -A SPID SPORT
	first="" k=0
	for n in $SIZES; do
		echo "== $n instances" >&2
		t0=$(date +%s.%N)
		start_annuaire "$n" $((PORT_A + 10 * k)) $((PORT_W + 10 * k))
		echo "  loaded and serving in $(awk -v t0="$t0" -v t1="$(date +%s.%N)" 'BEGIN {printf "%.1f", t1 - t0}') s, RSS $((ARSS / 1024)) MiB" >&2
		SPID[$n]=$APID SPORT[$n]=$((PORT_A + 10 * k)) RSS[$n]=$ARSS
		first=${first:-$n} k=$((k + 1))
	done
	start_nsd "${SPORT[$first]}" # the base zone: NSD's figures are the yardstick
	# Each run starts one place further along the list, so that no size
	# is always the one measured right after NSD, or last (in one fixed
	# order the 100-instance server, measured after NSD, came out 20%
	# slower in two of three runs).
	read -ra order <<<"nsd $SIZES"
	for i in $(seq "$RUNS"); do
		echo "== run $i" >&2
		for j in $(seq 0 $((${#order[@]} - 1))); do
			n=${order[$(((i - 1 + j) % ${#order[@]}))]}
			if [ "$n" = nsd ]; then
				RUNS=1 measure nsd "$PORT_N" "$NPID"
			else
				RUNS=1 measure "a$n" "${SPORT[$n]}" "${SPID[$n]}"
			fi
		done
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
	# per run, each size against the first: the sizes are measured
	# minutes apart at most, so their ratios drift less than the medians'
	for n in $SIZES; do [ "$n" = "$first" ] || { rounds "a$n" "a$first"; echo; }; done
	echo "| instances | annuaire RSS loaded (MiB) | RSS after the runs (MiB) | RSS growth per instance over the $first run, loaded (bytes) |"
	echo "|---|---|---|---|"
	for n in $SIZES; do
		printf '| %s | %d | %d | %s |\n' "$n" $((RSS[$n] / 1024)) $(($(awk '/VmRSS/ {print $2}' "/proc/${SPID[$n]}/status") / 1024)) \
			"$(awk -v a="${RSS[$n]}" -v b="${RSS[$first]}" -v n="$n" -v f="$first" 'BEGIN { if (n == f) print "-"; else printf "%.0f", (a - b) * 1024 / (n - f) }')"
	done
	;;
updates)
	SIZE=${SIZE:-100}
	CHURN_RATE=${CHURN_RATE:-1000}
	CHURN_WORKERS=${CHURN_WORKERS:-16}
	PROTOS=${PROTOS:-udp tcp}
	start_annuaire "$SIZE"
	declare -A SPORT=([annuaire]=$PORT_A) SPID=([annuaire]=$APID) SWEB=([annuaire]=$PORT_W) SDATA=([annuaire]=$ADATA)
	order=(annuaire)
	if [ -n "${BASELINE:-}" ]; then
		after=$BIN BIN=$BASELINE
		start_annuaire "$SIZE" "$PORT_B" $((PORT_B + 1)) -before
		BIN=$after SPORT[before]=$PORT_B SPID[before]=$APID SWEB[before]=$((PORT_B + 1)) SDATA[before]=$ADATA
		order+=(before)
	fi
	# alternate without and with churn, so drift hits both alike; with
	# BASELINE, each run pair of one binary then the other's, the first
	# of them changing at every run
	for i in $(seq "$RUNS"); do
		for mode in $PROTOS; do
			for j in $(seq 0 $((${#order[@]} - 1))); do
				n=${order[$(((i - 1 + j) % ${#order[@]}))]}
				r=$(perf "${SPORT[$n]}" "$mode" "${SPID[$n]}")
				echo "  $n $mode without updates, run $i: $r (q/s, server CPU share, lost, dnsperf CPU share, load, idle servers); $(cat "$WORK/switches")" >&2
				echo "$r" >>"$WORK/$n.quiet.$mode"
				r=$(churnperf "${SWEB[$n]}" "${SDATA[$n]}" "${SPORT[$n]}" "$mode" "${SPID[$n]}")
				echo "  $n $mode with updates, run $i: $r (..., writes/s, write errors, p50 ms, p99 ms, churn CPU share, missed slots); $(cat "$WORK/switches")" >&2
				echo "$r" >>"$WORK/$n.churn.$mode"
				paste -d' ' <(tail -1 "$WORK/$n.quiet.$mode") <(tail -1 "$WORK/$n.churn.$mode") >>"$WORK/$n.pairs.$mode"
			done
		done
	done
	echo "| annuaire, $SIZE instances (server on CPU $SERVER_CPU, dnsperf and churn on CPU $PERF_CPU; medians of $RUNS × ${SECS}s) | q/s without updates | q/s with | ratio with/without | q per server CPU-s without | with | ratio | writes/s achieved (target $CHURN_RATE) | write errors / missed slots | write p50 / p99 ms | UDP lost without / with | CPU share server / dnsperf without | with: server / dnsperf / churn |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	[ -z "${BASELINE:-}" ] || updates_table before ", before (BASELINE)"
	updates_table annuaire ""
	# a write rate short of the target makes the ratios say less than
	# the goal asks: say so (CHURN_WORKERS, or TMPDIR=/dev/shm if the
	# disk's fsync is the limit)
	for n in "${order[@]}"; do
		for m in $PROTOS; do
			awk -v m="$m" -v n="$n" -v t="$CHURN_RATE" '{s += $7; k++} END { if (s / k < .95 * t)
				printf "note: %s %s: churn averaged %.0f writes/s, short of the %s asked (see missed slots)\n", n, m, s / k, t }' "$WORK/$n.churn.$m" >&2
		done
	done
	;;
*)
	echo "usage: $0 [side|scale|updates|echo|web]" >&2; exit 2 ;;
esac
