#!/usr/bin/env bash
# A/B comparison of two lepeerchat server binaries under the load generator,
# alternating them run after run so that both see the same machine load.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY
#
# Either binary may be the word `floor`: bench/floor, the least a WebSocket
# relay can do, driven in PeerJS's wire format (not for IDLE=1).
#
# Each run starts a fresh server pinned to CPU 0 and the generator
# (cmd/lepeerchat-load, built here) on CPU 1, loopback only. Environment:
#   ROUNDS=6 CONNS=1000 RATE=20000 DUR=6s WARMUP=2s WORKLOAD=fixed400
#   IDLE=0 (IDLE=1: measure RSS per idle connection with IDLE_CONNS=10000)
#   OLD_ARGS, NEW_ARGS: extra generator flags for each binary, e.g.
#   OLD_ARGS=-acked for a server that predates quiet signals
# Prints every RESULT line and the median of the server's CPU per message
# (or bytes per connection), p50 and p99 of each binary.
set -uo pipefail
cd "$(dirname "$0")/.."
OLD=$1 NEW=$2
ROUNDS=${ROUNDS:-6}
CONNS=${CONNS:-1000}
RATE=${RATE:-20000}
DUR=${DUR:-6s}
WARMUP=${WARMUP:-2s}
WORKLOAD=${WORKLOAD:-fixed400}
IDLE=${IDLE:-0}
IDLE_CONNS=${IDLE_CONNS:-10000}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

TMP=$(mktemp -d /tmp/lpab.XXXXXX)
# The load opens its WebSockets from one address, many at once: raise the cap
# on connections not yet upgraded too (as variables, which builds without
# these flags ignore).
export LEPEERCHAT_MAX_HTTP_CONNS_PER_IP=100000 LEPEERCHAT_MAX_HTTP_CONNS=100000
SPID=
cleanup() {
	[ -n "$SPID" ] && kill -TERM "$SPID" 2>/dev/null && wait "$SPID" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)" || true

go build -o "$TMP/load" ./cmd/lepeerchat-load || exit 1
go build -o "$TMP/floor" ./bench/floor || exit 1

wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

PORT=18500
one() { # variant binary extra-generator-args
	PORT=$((PORT + 1))
	local target=(-target lepeerchat -url "ws://127.0.0.1:$PORT/ws")
	if [ "$2" = floor ]; then
		taskset -c "$SERVER_CPU" "$TMP/floor" -port "$PORT" >>"$TMP/server.log" 2>&1 &
		target=(-target peerjs -url "ws://127.0.0.1:$PORT/peerjs")
	else
		mkdir -p "$TMP/data-$PORT"
		taskset -c "$SERVER_CPU" "$2" -http -listen "127.0.0.1:$PORT" -turn=false -data "$TMP/data-$PORT" \
			-rate 1000000 -burst 1000000 -peer-signal-rate 1000000 -peer-signal-burst 1000000 -create-rate 100000000 -create-burst 1000000 -max-rooms 1000000 -max-conns-per-ip 100000 -log-level warn >>"$TMP/server.log" 2>&1 &
	fi
	SPID=$!
	wait_port "$PORT" || { echo "server did not start" >&2; return 1; }
	sleep 0.5
	local args=(-rooms $((CONNS / 2)) -members 2 -workload "$WORKLOAD" -rate "$RATE" -warmup "$WARMUP" -duration "$DUR")
	[ "$IDLE" = 1 ] && args=(-rooms $((IDLE_CONNS / 10)) -members 10 -workload idle -settle 5s)
	# shellcheck disable=SC2206 # the extra flags are words on purpose
	args+=($3)
	taskset -c "$LOAD_CPU" timeout 300 "$TMP/load" -label "$1" "${target[@]}" \
		-server-pid "$SPID" "${args[@]}" | grep '^RESULT' | tee -a "$TMP/results"
	kill -TERM "$SPID" 2>/dev/null
	wait "$SPID" 2>/dev/null
	SPID=
	rm -rf "$TMP/data-$PORT"
}

echo "== A/B $(date -u), loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
echo "old: $OLD"
echo "new: $NEW"
for i in $(seq "$ROUNDS"); do
	if (( i % 2 )); then one old "$OLD" "${OLD_ARGS:-}"; one new "$NEW" "${NEW_ARGS:-}"; else one new "$NEW" "${NEW_ARGS:-}"; one old "$OLD" "${OLD_ARGS:-}"; fi
done
echo "== loadavg after $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v idle="$IDLE" '
function get(k,   i, a) { for (i = 2; i <= NF; i++) { split($i, a, "="); if (a[1] == k) return substr($i, length(k) + 2) } return "" }
function median(arr, n,   i, j, t) {
	for (i = 2; i <= n; i++) { t = arr[i]; for (j = i - 1; j > 0 && arr[j] > t; j--) arr[j + 1] = arr[j]; arr[j + 1] = t }
	return n % 2 ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
}
{
	v = get("label"); n[v]++
	if (get("errors") != "none" || idle != 1 && get("relayed") + 0 == 0) { bad[v]++ }
	if (idle == 1) { a[v, n[v]] = get("bytes_per_conn") } else { a[v, n[v]] = get("server_us_per_msg"); b[v, n[v]] = get("p50_us"); c[v, n[v]] = get("p99_us") }
}
END {
	for (v in n) {
		for (i = 1; i <= n[v]; i++) { x[i] = a[v, i]; y[i] = b[v, i]; z[i] = c[v, i] }
		m[v] = median(x, n[v])
		if (idle == 1) printf "%s: median bytes/conn %.0f (n=%d)\n", v, m[v], n[v]
		else printf "%s: median server µs/msg %.2f, p50 %.0f µs, p99 %.0f µs (n=%d)\n", v, m[v], median(y, n[v]), median(z, n[v]), n[v]
	}
	if (m["old"] > 0) printf "new/old = %.2f\n", m["new"] / m["old"]
	for (v in bad) printf "WARNING: %d %s run(s) had errors or relayed nothing: their figures mean nothing (a server older than the generator needs -acked in %s_ARGS)\n", bad[v], v, toupper(v)
}' "$TMP/results"
