#!/usr/bin/env bash
# links.sh: the link benchmark of issue 4. Runs each scenario in the lab
# (tests/lab/lab.sh) for agg, kernel MPTCP and plain TCP over each single
# link, prints a table and writes CSV (and a PNG plot for scenario 4).
#
#   tests/bench/links.sh BUILDDIR [SCENARIO...]     (default: 1 2 3 4 5 6 7)
#
#   1  one stream, 3 links at 50/100/200 Mbit/s
#   2  one stream, 4 x 100 Mbit/s
#   3  one stream, 2 x 100 Mbit/s, one-way delays 5 ms and 25 ms
#   4  failover: one stream over the links of 1, the fastest (200 Mbit/s)
#      silently blackholed at 5 s and restored at 15 s; the stream is
#      checked byte for byte
#   5  stream open over 2 x 100 Mbit/s links with 20 ms one-way delay
#      (RTT 40 ms): SOCKS CONNECT and first echoed byte through agg, vs a
#      direct TCP connect (and a kernel MPTCP one)
#   6  1,000 concurrent echo streams through agg: all correct, RSS of
#      agg-client and agg-server, per stream
#   7  one unshaped loopback link: Gbit/s and CPU-seconds per GB of the agg
#      pair, vs a socat relay pair, vs plain TCP, and the floor any relay
#      pair has on this machine: tests/bench/relay-floor, blocking
#      read/write of 256 KiB and splice() through a pipe
# Throughputs in 1-3 leave out each run's first second (slow start; the
# whole run's figure is in the detail column). 100 % is the sum of what
# plain TCP gets over each link alone (measured in
# the same run, with cubic). Kernel MPTCP and agg run with bbr and with
# cubic (MPTCP: TCP_CONGESTION on the MPTCP sockets through BENCH_CC of
# bench-flow, which the kernel applies to every subflow, because a
# namespace's net.ipv4.tcp_congestion_control only takes the kernel's
# allowed list, here "reno bbr"; agg: --tcp-congestion on both programs). Data: tests/bench/bench-flow (every
# byte checked). Needs root, iproute2, nftables, mptcpd (mptcpize), socat,
# python3 (python3-matplotlib for the plot).
# Environment: BENCH_SECONDS (per throughput run, default 8), BENCH_OUT
# (output directory, default BUILDDIR/bench-links).
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: links.sh BUILDDIR [SCENARIO...]" >&2; exit 2; }
build=$(cd "$1" && pwd)
shift
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(1 2 3 4 5 6 7)
for s in "${scenarios[@]}"; do
	case $s in [1-7]) ;; *) echo "links.sh: bad scenario '$s': 1 to 7" >&2
		exit 2;; esac
done
[ "$(id -u)" = 0 ] || { echo "links.sh: needs root" >&2; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
lab=$here/../lab/lab.sh
flow=$build/tests/bench/bench-flow
floor=$build/tests/bench/relay-floor
server_bin=$build/proxy-server/agg-server
client_bin=$build/proxy-client/agg-client
export LAB_DELAY_BIN=$build/tests/lab/lab-delay
for f in "$flow" "$server_bin" "$client_bin" "$LAB_DELAY_BIN"; do
	[ -x "$f" ] || { echo "links.sh: $f is missing (ninja -C $build)" >&2
		exit 1; }
done
for c in mptcpize socat nft tc; do
	command -v $c >/dev/null ||
		{ echo "links.sh: $c is not installed" >&2; exit 1; }
done
T=${BENCH_SECONDS:-8}
out=${BENCH_OUT:-$build/bench-links}
mkdir -p "$out"
csv=$out/results.csv
echo "scenario,system,mbit,pct_of_sum,detail" > "$csv"
name=bench$$
tmp=$(mktemp -d /tmp/agg-bench.XXXXXX)
echo "bench secret $$" > "$tmp/secret"
lab_up=0

cleanup() {
	trap - EXIT INT TERM
	[ $lab_up = 0 ] || "$lab" down "$name" || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

C=$name-c
S=$name-s
inc() { ip netns exec "$C" "$@"; }
ins() { ip netns exec "$S" "$@"; }
log() { echo "# $*" >&2; }

table=()
# row SCENARIO SYSTEM MBIT PCT DETAIL: one line of the table and the CSV.
row() {
	table+=("$(printf '%-3s %-26s %9s %7s  %s' "$1" "$2" "$3" "$4" "$5")")
	echo "$1,$2,$3,$4,\"$5\"" >> "$csv"
	printf '%-3s %-26s %9s %7s  %s\n' "$1" "$2" "$3" "$4" "$5" >&2
}

# lab_start SPEC...: a fresh lab with these links.
lab_start() {
	local a=() s
	[ $lab_up = 0 ] || lab_stop
	for s in "$@"; do a+=(--link "$s"); done
	"$lab" up "$name" "${a[@]}" >/dev/null
	lab_up=1
	nlinks=$#
	# Every link's rate and delay takes a moment to settle (carrier).
	sleep 1
}
lab_stop() {
	"$lab" down "$name"
	lab_up=0
}

# Bytes received on c1..cN, space separated.
rx_bytes() {
	local i
	for i in $(seq 1 "$nlinks"); do
		inc cat "/sys/class/net/c$i/statistics/rx_bytes"
	done | tr '\n' ' '
}
# The share of each link in the bytes received since $1 (rx_bytes output).
shares() {
	local before=($1) after=($(rx_bytes)) i tot=0 d=() s=""
	for i in "${!before[@]}"; do
		d[$i]=$((after[i] - before[i]))
		tot=$((tot + d[i]))
	done
	[ $tot -gt 0 ] || tot=1
	for i in "${!d[@]}"; do s="$s${s:+/}$((d[i] * 100 / tot))"; done
	echo "link shares % $s"
}

# kv KEY LINE: the value of KEY=... in LINE.
kv() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<< "$2"; }

bg_pids=()
# bg NS CMD...: starts CMD in namespace NS in the background (ip netns exec,
# env and mptcpize exec, so the pid is CMD's); bg_stop ends all of them.
bg() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@" &
	bg_pids+=($!)
}
bg_stop() {
	local p
	for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${bg_pids[@]}"; do wait "$p" 2>/dev/null || true; done
	bg_pids=()
}

# Waits (bounded) until agg-client in C has $1 established links.
agg_links_up() {
	local i n=0
	for i in $(seq 1 200); do
		n=$(inc ss -tnH state established '( dport = :5800 )' | grep -c . ||
			true)
		[ "$n" -lt "$1" ] || return 0
		sleep 0.1
	done
	log "only $n of $1 agg links came up"
	return 1
}
# agg_start CC CLIENT_ARGS...: agg-server in S, agg-client in C with one
# link per lab link (tcp://10.99.i.2:5800), both with --tcp-congestion CC.
agg_start() {
	local cc=$1 urls=() i
	shift
	for i in $(seq 1 "$nlinks"); do urls+=("tcp://10.99.$i.2:5800"); done
	bg "$S" "$server_bin" -v -l tcp://0.0.0.0:5800 -k "$tmp/secret" \
		--tcp-congestion "$cc" >>"$out/agg-server.log" 2>&1
	sleep 0.3
	bg "$C" "$client_bin" -vv -k "$tmp/secret" --tcp-congestion "$cc" "$@" \
		"${urls[@]}" >"$tmp/client.log" 2>&1
	agg_links_up "$nlinks"
	sleep 0.5
}
# Appends the client's log of this run to the output directory.
agg_stop() {
	bg_stop
	{ echo "=== $*"; cat "$tmp/client.log"; } >> "$out/agg-client.log"
}
# mptcp_setup: the kernel path manager makes one subflow per client link:
# the server's 10.99.0.2 is reachable over each link (lab.sh policy routes).
mptcp_setup() {
	local i
	inc ip mptcp limits set subflows 8 add_addr_accepted 8
	ins ip mptcp limits set subflows 8 add_addr_accepted 8
	for i in $(seq 2 "$nlinks"); do
		inc ip mptcp endpoint add "10.99.$i.1" dev "c$i" subflow
	done
}

# fetch_row SCN SYSTEM PORT_HOST... : one download of T seconds, one row.
declare -A single
sum=0
fetch_row() {
	local scn=$1 sys=$2 before line mbit pct detail
	shift 2
	before=$(rx_bytes)
	line=$(inc "$@" 2>&1 | tail -n 1) || true
	mbit=$(kv steady_mbit "$line")
	detail="$(shares "$before"); whole run $(kv mbit "$line")"
	if [ "$(kv bad_offset "$line")" != -1 ] || [ "$(kv eof "$line")" != 1 ]; then
		detail="BROKEN STREAM: $line; $detail"
	fi
	[ -n "$mbit" ] || mbit=0
	pct=$(awk -v m="$mbit" -v s="$sum" 'BEGIN { if (s > 0) printf "%.1f", 100 * m / s; else print "-" }')
	row "$scn" "$sys" "$mbit" "$pct" "$detail"
	last_mbit=$mbit
}

# singles SCN: plain TCP over each link alone; sets sum and best.
singles() {
	local scn=$1 i
	bg "$S" env BENCH_CC=cubic "$flow" serve 7001 send "$T"
	sleep 0.2
	sum=0
	best=0
	local total=0
	for i in $(seq 1 "$nlinks"); do
		fetch_row "$scn" "tcp link $i alone (cubic)" env BENCH_CC=cubic \
			"$flow" fetch \
			-t $((T + 30)) "10.99.$i.2" 7001
		single[$i]=$last_mbit
		total=$(awk -v a="$total" -v b="$last_mbit" 'BEGIN { print a + b }')
		best=$(awk -v a="$best" -v b="$last_mbit" 'BEGIN { print (b > a ? b : a) }')
	done
	sum=$total
	bg_stop
	row "$scn" "sum of single links" "$sum" 100.0 "= 100 %"
	row "$scn" "best single link" "$best" \
		"$(awk -v m="$best" -v s="$sum" 'BEGIN { printf "%.1f", 100 * m / s }')" ""
}

# throughput SCN SPEC...: scenario 1, 2 or 3.
throughput() {
	local scn=$1 cc
	shift
	log "scenario $scn: links $*"
	lab_start "$@"
	singles "$scn"
	mptcp_setup
	for cc in bbr cubic; do
		bg "$S" env BENCH_CC="$cc" mptcpize run "$flow" serve 7002 send "$T"
		sleep 0.3
		fetch_row "$scn" "mptcp $cc" env BENCH_CC="$cc" mptcpize run \
			"$flow" fetch -t $((T + 30)) 10.99.0.2 7002
		bg_stop
	done
	for cc in bbr cubic; do
		bg "$S" "$flow" serve 7001 send "$T"
		agg_start "$cc" -L 127.0.0.1:7100:127.0.0.1:7001
		fetch_row "$scn" "agg $cc" "$flow" fetch -t $((T + 30)) \
			127.0.0.1 7100
		agg_stop "scenario $scn agg $cc"
	done
	lab_stop
}

# failover: scenario 4.
failover() {
	local scn=4 cc line rem res sys plots=() fast=3
	log "scenario 4: failover, links 50/100/200 mbit, link 3 blackholed 5-15 s"
	lab_start 50mbit 100mbit 200mbit
	singles 4
	rem=$(awk -v s="$sum" -v f="${single[$fast]}" 'BEGIN { print s - f }')
	mptcp_setup
	for sys in "agg cubic" "agg bbr" "mptcp cubic" "mptcp bbr"; do
		cc=${sys#* }
		local tag=${sys// /-} cmd=()
		if [ "${sys%% *}" = agg ]; then
			bg "$S" "$flow" serve 7001 send 20
			agg_start "$cc" -L 127.0.0.1:7100:127.0.0.1:7001
			cmd=("$flow" fetch -t 60 -p "$out/failover-$tag.progress" \
				127.0.0.1 7100)
		else
			bg "$S" env BENCH_CC="$cc" mptcpize run "$flow" serve 7002 \
				send 20
			sleep 0.3
			cmd=(env BENCH_CC="$cc" mptcpize run "$flow" fetch -t 60 -p \
				"$out/failover-$tag.progress" 10.99.0.2 7002)
		fi
		line=$(inc python3 "$here/failover.py" drive --lab "$lab" \
			--name "$name" --links 3 --link $fast --fault-at 5 \
			--restore-at 15 --seconds 20 \
			--samples "$out/failover-$tag.csv" \
			--progress "$out/failover-$tag.progress" -- "${cmd[@]}" |
			tail -n 1)
		if [ "${sys%% *}" = agg ]; then
			agg_stop "scenario 4 $sys"
		else
			bg_stop
		fi
		res=$(python3 "$here/failover.py" analyze \
			--samples "$out/failover-$tag.csv" \
			--progress "$out/failover-$tag.progress" --remaining "$rem" \
			--link $fast --link-mbit "${single[$fast]}" --fault-at 5 \
			--restore-at 15)
		local lost=0 st=intact
		if [ "$(kv bad_offset "$line")" != -1 ]; then
			st="BROKEN at byte $(kv bad_offset "$line")"
		elif [ "$(kv eof "$line")" != 1 ]; then
			st="STALLED after $(kv bytes "$line") bytes (no EOF)"
		fi
		row 4 "$sys" "$(kv mbit "$line")" "$(awk -v m="$(kv mbit "$line")" \
			-v s="$sum" 'BEGIN { printf "%.1f", 100 * m / s }')" \
			"stream $st; to 90% of remaining ${rem} Mbit/s: $(kv recover_s \
			"$res") s; link 3 back after restore: $(kv back_s "$res") s"
		plots+=("$sys=$out/failover-$tag.csv")
	done
	if /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
		/usr/bin/python3 "$here/failover.py" plot --out "$out/failover.png" \
			--fault-at 5 --restore-at 15 --seconds 20 "${plots[@]}"
		log "plot: $out/failover.png"
	else
		log "no python3-matplotlib: no plot"
	fi
	lab_stop
}

# RSS in KiB of process $1.
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
# The pid of the process named $2 in namespace $1 (the newest).
ns_pid() {
	local p
	for p in $(ip netns pids "$1"); do
		[ "$(cat "/proc/$p/comm" 2>/dev/null)" != "$2" ] || echo "$p"
	done | tail -n 1
}

# open_latency: scenario 5.
open_latency() {
	local line
	log "scenario 5: stream open, 2 x 100 mbit, 20 ms one-way delay"
	lab_start 100mbit:20ms 100mbit:20ms
	sum=0
	bg "$S" "$flow" serve 7000 echo
	bg "$S" mptcpize run "$flow" serve 7003 echo
	sleep 0.3
	line=$(inc "$flow" open 10.99.1.2 7000 20)
	row 5 "direct tcp connect" "-" "-" "RTT 40 ms; $line"
	mptcp_setup
	line=$(inc mptcpize run "$flow" open 10.99.0.2 7003 20)
	row 5 "direct mptcp connect" "-" "-" "$line"
	agg_start cubic -D 127.0.0.1:1080
	line=$(inc "$flow" open -s 1080 127.0.0.1 7000 20)
	row 5 "agg socks connect" "-" "-" "open = SOCKS reply; $line"
	agg_stop "scenario 5"
	lab_stop
}

# many_streams: scenario 6.
many_streams() {
	local n=1000 cp sp c0 s0 c1 s1 c2 s2 line
	log "scenario 6: $n concurrent streams, 2 x 100 mbit"
	lab_start 100mbit 100mbit
	sum=0
	bg "$S" "$flow" serve 7000 echo
	agg_start cubic -D 127.0.0.1:1080
	cp=$(ns_pid "$C" agg-client)
	sp=$(ns_pid "$S" agg-server)
	c0=$(rss "$cp") s0=$(rss "$sp")
	rm -f "$tmp/go"
	inc "$flow" streams -s 1080 -w "$tmp/go" 127.0.0.1 7000 $n \
		>"$tmp/streams.out" 2>&1 &
	local fp=$! i
	for i in $(seq 1 600); do
		grep -q opened "$tmp/streams.out" && break
		kill -0 $fp 2>/dev/null || break
		sleep 0.1
	done
	sleep 0.5
	c1=$(rss "$cp") s1=$(rss "$sp")
	touch "$tmp/go"
	for i in $(seq 1 600); do
		grep -q correct "$tmp/streams.out" && break
		kill -0 $fp 2>/dev/null || break
		sleep 0.1
	done
	sleep 0.5
	c2=$(rss "$cp") s2=$(rss "$sp")
	rm -f "$tmp/go"
	wait $fp || true
	line=$(grep correct "$tmp/streams.out" || cat "$tmp/streams.out")
	row 6 "agg $n streams" "-" "-" "$line"
	row 6 "agg-client RSS KiB" "-" "-" "idle session $c0, $n idle streams $c1 ($(( (c1 - c0) * 1024 / n )) B/stream), after 1 KiB echoed on each $c2 ($(( (c2 - c0) * 1024 / n )) B/stream)"
	row 6 "agg-server RSS KiB" "-" "-" "idle session $s0, $n idle streams $s1 ($(( (s1 - s0) * 1024 / n )) B/stream), after 1 KiB echoed on each $s2 ($(( (s2 - s0) * 1024 / n )) B/stream)"
	agg_stop "scenario 6"
	lab_stop
}

# CPU seconds (user + system) of process $1 and its reaped children.
cpu_s() {
	awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15 + $16 + $17) / hz }' \
		"/proc/$1/stat"
}

# relay_pair NAME FORMAT: scenario 7's row for a pair of relays, each
# started from FORMAT (printf: listen port, target port), fed by the source
# and read by the sink; CPU-seconds per GB of both relays.
relay_pair() {
	local name=$1 format=$2 line gb cpu s1 s2
	bg "$C" "$flow" serve 7001 send "$T"
	# shellcheck disable=SC2059
	inc bash -c "TIMEFORMAT='%U %S'; { time $(printf "$format" 7301 7001) 2>/dev/null; } 2>$tmp/relay-s.time" &
	s1=$!
	# shellcheck disable=SC2059
	inc bash -c "TIMEFORMAT='%U %S'; { time $(printf "$format" 7300 7301) 2>/dev/null; } 2>$tmp/relay-c.time" &
	s2=$!
	sleep 0.5
	line=$(inc "$flow" fetch -t 60 127.0.0.1 7300)
	wait "$s1" "$s2" || true
	gb=$(awk -v n="$(kv bytes "$line")" 'BEGIN { print n / 1e9 }')
	cpu=$(cat "$tmp/relay-s.time" "$tmp/relay-c.time" |
		awk -v g="$gb" '{ t += $1 + $2 } END { printf "%.2f", t / g }')
	row 7 "$name" "$(kv mbit "$line")" "-" "$cpu CPU-s/GB (both relays); $line"
	bg_stop
}

# cpu_cost: scenario 7.
cpu_cost() {
	local line gb cpu cp sp a b
	log "scenario 7: one unshaped loopback link"
	lab_start none
	sum=0
	bg "$C" "$flow" serve 7001 send "$T"
	sleep 0.2
	line=$(inc "$flow" fetch -t 60 127.0.0.1 7001)
	row 7 "plain tcp loopback" "$(kv mbit "$line")" "-" "$line"
	# agg pair on loopback, both in C.
	bg "$C" "$server_bin" -l tcp://127.0.0.1:5900 -k "$tmp/secret" \
		>>"$out/agg-server.log" 2>&1
	sleep 0.3
	bg "$C" "$client_bin" -v -k "$tmp/secret" -L 127.0.0.1:7100:127.0.0.1:7001 \
		tcp://127.0.0.1:5900 >"$tmp/client.log" 2>&1
	sleep 1.5
	cp=$(ns_pid "$C" agg-client)
	sp=$(ns_pid "$C" agg-server)
	a=$(awk -v x="$(cpu_s "$cp")" -v y="$(cpu_s "$sp")" 'BEGIN { print x + y }')
	line=$(inc "$flow" fetch -t 60 127.0.0.1 7100)
	b=$(awk -v x="$(cpu_s "$cp")" -v y="$(cpu_s "$sp")" 'BEGIN { print x + y }')
	gb=$(awk -v n="$(kv bytes "$line")" 'BEGIN { print n / 1e9 }')
	cpu=$(awk -v a="$a" -v b="$b" -v g="$gb" 'BEGIN { printf "%.2f", (b - a) / g }')
	row 7 "agg pair" "$(kv mbit "$line")" "-" "$cpu CPU-s/GB (client+server); $line"
	agg_stop "scenario 7"
	# Relay pairs (client relay -> server relay -> source): socat, and the
	# floor, the same pair with nothing but the moving of bytes.
	relay_pair "socat relay pair" "socat -b 131072 TCP-LISTEN:%s,reuseaddr TCP:127.0.0.1:%s"
	relay_pair "relay floor pair (copy)" "$floor copy %s %s"
	relay_pair "relay floor pair (splice)" "$floor splice %s %s"
	lab_stop
}

: > "$out/agg-client.log"
: > "$out/agg-server.log"
started=$(date +%s)
for s in "${scenarios[@]}"; do
	case $s in
	1) throughput 1 50mbit 100mbit 200mbit;;
	2) throughput 2 100mbit 100mbit 100mbit 100mbit;;
	3) throughput 3 100mbit:5ms 100mbit:25ms;;
	4) failover;;
	5) open_latency;;
	6) many_streams;;
	7) cpu_cost;;
	esac
done
echo
echo "agg link benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, kernel $(uname -r), $T s per run, $(($(date +%s) - started)) s in all"
printf '%-3s %-26s %9s %7s  %s\n' scn system Mbit/s "% sum" detail
printf '%s\n' "${table[@]}"
echo "CSV: $csv"
