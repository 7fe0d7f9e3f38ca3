#!/usr/bin/env bash
# Cost of each link transport: one unshaped loopback link of agg (tcp://,
# tls:// with the PSK, ws://, wss:// with the PSK) carrying one download through
# a -L forward, against a socat TLS relay pair (TLS 1.3, a certificate)
# moving the same bytes, and a plain socat TCP relay pair. Prints
# throughput and CPU-seconds per GB (both processes of the pair, user +
# system). Not a pass/fail test; numbers vary with the machine's load.
# Usage: transports.sh BUILDDIR [BYTES]   (default 1 GiB)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"
build=$(cd "$1" && pwd)
bytes=${2:-$((1024 * 1024 * 1024))}
server_bin=$build/proxy-server/agg-server
client_bin=$build/proxy-client/agg-client
tmp=$(mktemp -d /tmp/agg-bench-tr.XXXXXX)
pids=()
cleanup() {
	[ "$BASHPID" = "$$" ] || return 0
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

for tool in socat openssl /usr/bin/time; do
	command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
# Waits until something listens on a port (without connecting: the
# sources and relays take one connection only).
wait_port() {
	local i
	for i in $(seq 1 100); do
		if [ -n "$(ss -Hltn "sport = :$1")" ]; then
			return 0
		fi
		sleep 0.1
	done
	echo "port $1 never opened" >&2
	exit 1
}
tck=$(getconf CLK_TCK)
# CPU ticks (user + system) of a running process.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
now_ns() { date +%s%N; }

echo "bench secret" > "$tmp/secret"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$tmp/key.pem" -out "$tmp/cert.pem" -days 2 \
	-subj /CN=bench 2>/dev/null

# A source that sends zeros to the first connection.
start_source() {
	src_port=$(free_port)
	socat -u -b 262144 OPEN:/dev/zero "TCP-LISTEN:$src_port,bind=127.0.0.1,reuseaddr" &
	pids+=($!)
	wait_port "$src_port"
}

# Reads $bytes from port $1; prints the seconds it took.
drain_from() {
	local t0 t1
	t0=$(now_ns)
	socat -u -b 262144 "TCP:127.0.0.1:$1" STDOUT | head -c "$bytes" |
		wc -c > "$tmp/count"
	t1=$(now_ns)
	[ "$(cat "$tmp/count")" = "$bytes" ] || {
		echo "short read: $(cat "$tmp/count") of $bytes" >&2
		exit 1
	}
	echo "$(( (t1 - t0) / 1000000 ))"
}

# Prints one table row from the label, milliseconds and CPU seconds.
row() {
	awk -v l="$1" -v ms="$2" -v cpu="$3" -v b="$bytes" 'BEGIN {
		gbit = b * 8 / (ms / 1000) / 1e9
		printf "%-22s %10.2f %12.2f %14.3f\n", l, gbit, ms / 1000,
		    cpu / (b / 1e9)
	}'
}

agg_run() {
	local scheme=$1 port url fwd sp cp c0 c1 ms
	port=$(free_port)
	fwd=$(free_port)
	case $scheme in
	tcp|tls) url="$scheme://127.0.0.1:$port" ;;
	ws|wss) url="$scheme://127.0.0.1:$port/agg" ;;
	esac
	start_source
	"$server_bin" -q -k "$tmp/secret" -l "$url" &
	sp=$!
	pids+=($sp)
	wait_port "$port"
	"$client_bin" -q -k "$tmp/secret" \
		-L "127.0.0.1:$fwd:127.0.0.1:$src_port" "$url" &
	cp=$!
	pids+=($cp)
	wait_port "$fwd"
	sleep 1
	c0=$(( $(cpu_ticks "$sp") + $(cpu_ticks "$cp") ))
	ms=$(drain_from "$fwd")
	c1=$(( $(cpu_ticks "$sp") + $(cpu_ticks "$cp") ))
	kill "$cp" "$sp"
	wait "$cp" "$sp" 2>/dev/null || true
	row "agg $scheme://" "$ms" "$(awk -v t=$((c1 - c0)) -v h="$tck" \
		'BEGIN { print t / h }')"
}

# socat relay pair: client side TCP -> (TLS or TCP) -> server side -> source.
socat_run() {
	local kind=$1 mid fwd ms cpu
	mid=$(free_port)
	fwd=$(free_port)
	start_source
	if [ "$kind" = tls ]; then
		/usr/bin/time -f "%U %S" -o "$tmp/t2" socat -b 262144 \
			"OPENSSL-LISTEN:$mid,bind=127.0.0.1,reuseaddr,cert=$tmp/cert.pem,key=$tmp/key.pem,verify=0" \
			"TCP:127.0.0.1:$src_port" &
		pids+=($!)
		wait_port "$mid"
		/usr/bin/time -f "%U %S" -o "$tmp/t1" socat -b 262144 \
			"TCP-LISTEN:$fwd,bind=127.0.0.1,reuseaddr" \
			"OPENSSL:127.0.0.1:$mid,verify=0" &
		pids+=($!)
	else
		/usr/bin/time -f "%U %S" -o "$tmp/t2" socat -b 262144 \
			"TCP-LISTEN:$mid,bind=127.0.0.1,reuseaddr" \
			"TCP:127.0.0.1:$src_port" &
		pids+=($!)
		wait_port "$mid"
		/usr/bin/time -f "%U %S" -o "$tmp/t1" socat -b 262144 \
			"TCP-LISTEN:$fwd,bind=127.0.0.1,reuseaddr" \
			"TCP:127.0.0.1:$mid" &
		pids+=($!)
	fi
	wait_port "$fwd"
	ms=$(drain_from "$fwd")
	wait "${pids[@]: -2}" 2>/dev/null || true
	cpu=$(cat "$tmp/t1" "$tmp/t2" | awk '{ s += $1 + $2 } END { print s }')
	row "socat $kind relay pair" "$ms" "$cpu"
}

printf "%s bytes per run\n" "$bytes"
printf "%-22s %10s %12s %14s\n" "transport" "Gbit/s" "seconds" "CPU-s per GB"
for s in tcp tls ws wss; do
	agg_run "$s"
done
socat_run tls
socat_run tcp
