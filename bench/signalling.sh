#!/usr/bin/env bash
# Signalling load: lepeerchat against the PeerJS server (npm `peer`, pinned
# in bench/package.json) and against the floor (bench/floor: the least a
# WebSocket relay can do, what relaying costs the kernel), side by side in
# one run, then lepeerchat with two nodes sharing one Redis. Servers are pinned to CPU 0 (`taskset -c 0`), the
# load generator (cmd/lepeerchat-load) to CPU 1. Loopback only; every run is
# bounded (timeout) and every process started here is stopped on exit.
#
# Sizes can be reduced from the environment:
#   CONNS=1000 IDLE_CONNS=10000 RATE=20000 DUR=10s SAT_DUR=8s CLUSTER_RATES="20000 10000 5000"
# and phases chosen with PHASES="saturation fixed realistic idle cluster".
# Results (full generator output and a summary table) go to bench/results/.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

CONNS=${CONNS:-1000}
IDLE_CONNS=${IDLE_CONNS:-10000}
RATE=${RATE:-20000}
DUR=${DUR:-10s}
SAT_DUR=${SAT_DUR:-8s}
WARMUP=${WARMUP:-2s}
REAL_RATE=${REAL_RATE:-10000}
CLUSTER_RATES=${CLUSTER_RATES:-"20000 10000 5000"}
PHASES=${PHASES:-"saturation fixed realistic idle cluster"}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
LP_LIMITS=(-rate 1000000 -burst 1000000 -peer-signal-rate 1000000 -peer-signal-burst 1000000 -create-rate 100000000 -create-burst 1000000 -max-rooms 1000000 -max-conns-per-ip 100000)
# The load opens its WebSockets from one address, many at once: raise the cap
# on connections not yet upgraded too (as variables, which builds without
# these flags ignore).
export LEPEERCHAT_MAX_HTTP_CONNS_PER_IP=100000 LEPEERCHAT_MAX_HTTP_CONNS=100000
LP_NOTE="lepeerchat -http -turn=false -rate 1000000 -burst 1000000 -peer-signal-rate 1000000 -peer-signal-burst 1000000 -create-rate 100000000 -create-burst 1000000 -max-rooms 1000000 -max-conns-per-ip 100000 (per-connection and per-pair rate limiters, room creation limits and per-address cap raised for the load, still checked on every message)"

TMP=$(mktemp -d /tmp/lpbench.XXXXXX)
RES=$ROOT/bench/results
mkdir -p "$RES"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
LOG=$RES/signalling-$STAMP.log
SUMMARY=$RES/signalling-$STAMP.txt
STARTED=()

cleanup() {
	for p in "${STARTED[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in "${STARTED[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
	done
	wait 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "$@" | tee -a "$LOG"; }

# The generator holds IDLE_CONNS sockets, so do the servers.
ulimit -n "$(ulimit -Hn)" || true
if (( $(ulimit -n) < IDLE_CONNS + 1000 )); then
	IDLE_CONNS=$(( $(ulimit -n) - 1000 ))
	say "fd limit $(ulimit -n): idle connections reduced to $IDLE_CONNS"
fi

say "== signalling load, $(date -u)"
say "machine: nproc=$(nproc), $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(uname -sr), $(go version | cut -d' ' -f3-)"
say "commit: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo ' (dirty tree)')"
say "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

go build -o "$TMP/lepeerchat" ./cmd/lepeerchat || exit 1
go build -o "$TMP/load" ./cmd/lepeerchat-load || exit 1
go build -o "$TMP/floor" ./bench/floor || exit 1
if [ ! -f bench/node_modules/peer/dist/bin/peerjs.js ]; then
	(cd bench && timeout 300 npm install --no-fund --no-audit) || exit 1
fi
say "peer $(node -p "require('./bench/node_modules/peer/package.json').version"), node $(node --version), $(redis-server --version | cut -d' ' -f1-3)"

wait_port() { # port
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "port $1 did not open" >&2
	return 1
}

stop() { # pid...
	for p in "$@"; do kill -TERM "$p" 2>/dev/null; done
	for p in "$@"; do
		for _ in $(seq 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
}

PORT=18000
SPID=
start_peerjs() {
	PORT=$((PORT + 1))
	taskset -c "$SERVER_CPU" node bench/node_modules/peer/dist/bin/peerjs.js --host 127.0.0.1 --port "$PORT" \
		--concurrent_limit 20000 >>"$TMP/peerjs.log" 2>&1 &
	SPID=$!
	STARTED+=("$SPID")
	URL="ws://127.0.0.1:$PORT/peerjs"
	wait_port "$PORT"
	sleep 0.5
}
start_lp() { # extra flags...
	PORT=$((PORT + 1))
	mkdir -p "$TMP/data-$PORT"
	taskset -c "$SERVER_CPU" "$TMP/lepeerchat" -http -listen "127.0.0.1:$PORT" -turn=false -data "$TMP/data-$PORT" \
		"${LP_LIMITS[@]}" -log-level warn "$@" >>"$TMP/lepeerchat.log" 2>&1 &
	SPID=$!
	STARTED+=("$SPID")
	URL="ws://127.0.0.1:$PORT/ws"
	wait_port "$PORT"
	sleep 0.5
}

# The floor speaks PeerJS's wire format, so the generator drives it as one.
start_floor() {
	PORT=$((PORT + 1))
	taskset -c "$SERVER_CPU" "$TMP/floor" -port "$PORT" >>"$TMP/floor.log" 2>&1 &
	SPID=$!
	STARTED+=("$SPID")
	URL="ws://127.0.0.1:$PORT/peerjs"
	wait_port "$PORT"
	sleep 0.5
}

load() { # label, args...
	local label=$1
	shift
	say "--- $label: load $* (loadavg $(cut -d' ' -f1 /proc/loadavg))"
	taskset -c "$LOAD_CPU" timeout 420 "$TMP/load" -label "$label" "$@" 2>&1 | tee -a "$LOG"
}

run_pair() { # label-suffix, per-target function
	local name=$1
	shift
	start_peerjs
	load "peerjs-$name" -target peerjs -url "$URL" -server-pid "peerjs=$SPID" "$@"
	stop "$SPID"
	start_lp
	load "lepeerchat-$name" -target lepeerchat -url "$URL" -server-pid "lepeerchat=$SPID" -server-note "$LP_NOTE" "$@"
	stop "$SPID"
	start_floor
	load "floor-$name" -target peerjs -url "$URL" -server-pid "floor=$SPID" "$@"
	stop "$SPID"
}

PAIRS=$((CONNS / 2))
phase() { [[ " $PHASES " == *" $1 "* ]]; }
# 1. Saturation: 400-byte messages A→B, 8 in flight per pair.
phase saturation && run_pair saturation -rooms "$PAIRS" -members 2 -workload fixed400 -rate 0 -window 8 -warmup "$WARMUP" -duration "$SAT_DUR"
# 2. Fixed offered load: RATE msg/s between CONNS members, paced.
phase fixed && run_pair "fixed$RATE" -rooms "$PAIRS" -members 2 -workload fixed400 -rate "$RATE" -warmup "$WARMUP" -duration "$DUR"
# 3. Realistic mix: ~4 KB offers and ~300 B candidates, rooms of 5.
phase realistic && run_pair "realistic$REAL_RATE" -rooms $((CONNS / 5)) -members 5 -workload realistic -rate "$REAL_RATE" -warmup "$WARMUP" -duration "$DUR"
# 4. Idle memory: IDLE_CONNS connected members (lepeerchat: rooms of 10).
if phase idle; then
start_peerjs
load "peerjs-idle" -target peerjs -url "$URL" -server-pid "peerjs=$SPID" -rooms $((IDLE_CONNS / 10)) -members 10 -workload idle -settle 5s
stop "$SPID"
start_lp
load "lepeerchat-idle" -target lepeerchat -url "$URL" -server-pid "lepeerchat=$SPID" -server-note "$LP_NOTE" -rooms $((IDLE_CONNS / 10)) -members 10 -workload idle -settle 5s
stop "$SPID"
fi

# 5. Two lepeerchat nodes and one Redis, all on the server CPU; members of
# each pair on different nodes (the owner on node 1, the other on node 2).
if phase cluster; then
RPORT=16390
mkdir -p "$TMP/redis"
taskset -c "$SERVER_CPU" redis-server --bind 127.0.0.1 --port "$RPORT" --dir "$TMP/redis" --save "" --appendonly no \
	--protected-mode yes >"$TMP/redis.log" 2>&1 &
RPID=$!
STARTED+=("$RPID")
wait_port "$RPORT"
for rate in $CLUSTER_RATES; do
	redis-cli -p "$RPORT" flushall >/dev/null 2>&1
	start_lp -redis "redis://127.0.0.1:$RPORT/0" -node n1
	N1=$SPID U1=$URL
	start_lp -redis "redis://127.0.0.1:$RPORT/0" -node n2
	N2=$SPID U2=$URL
	load "2nodes-fixed$rate" -target lepeerchat -url "$U1,$U2" -server-pid "n1=$N1,n2=$N2,redis=$RPID" -server-note "$LP_NOTE; two nodes + redis-server, all on CPU $SERVER_CPU" \
		-rooms "$PAIRS" -members 2 -workload fixed400 -rate "$rate" -warmup "$WARMUP" -duration "$DUR"
	stop "$N1" "$N2"
done
stop "$RPID"
fi
say "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

{
	echo "== summary ($(date -u), nproc=$(nproc), servers on CPU $SERVER_CPU, generator on CPU $LOAD_CPU)"
	echo "server: $LP_NOTE"
	grep '^RESULT' "$LOG" | awk '
	function get(k,   i, a) { for (i = 2; i <= NF; i++) { split($i, a, "="); if (a[1] == k) return substr($i, length(k) + 2) } return "-" }
	BEGIN { printf "%-26s %6s %7s %8s %8s %9s %9s %10s %8s %9s %7s %9s  %s\n", "run", "conns", "joins/s", "offered", "relayed", "p50 µs", "p99 µs", "max µs", "srv CPU%", "srv µs/msg", "gen CPU%", "B/conn", "errors" }
	{ printf "%-26s %6s %7s %8s %8s %9s %9s %10s %8s %9s %7s %9s  %s\n", get("label"), get("conns"), get("joins_per_s"), get("offered"), get("relayed"), get("p50_us"), get("p99_us"), get("max_us"), get("server_cpu_pct"), get("server_us_per_msg"), get("gen_cpu_pct"), get("bytes_per_conn"), get("errors") }'
} | tee "$SUMMARY" | tee -a "$LOG"
echo "full log: $LOG"
