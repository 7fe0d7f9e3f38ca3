#!/usr/bin/env bash
# End-to-end failover between two network namespaces: agg-client in C,
# agg-server in S, joined by three veth pairs (c1-s1, c2-s2, c3-s3), each its
# own /24 and shaped by tbf on both ends. S answers ARP only on the interface
# that owns the address, so each server address is reachable only through
# its own veth and the client has exactly one working link per interface.
# A 48 MiB download through SOCKS5 must arrive intact (sha256):
#   - over the three links, each carrying part of it;
#   - while c2 loses its carrier (ip link set down); c2 then comes back;
#   - while c1 is silently blackholed (nftables drop both ways, no RST;
#     without nft, neighbour entries pointed at a MAC nobody has);
#   - over c1 alone, once the rule is gone and c2, c3 are blackholed;
#   - over c2 alone (the link whose carrier came back), c1, c3 blackholed.
# Then SOCKS replies 3 (no route) and 6 (no answer) from real situations,
# and finally SIGTERM must end agg-client (bounded wait).
# Link states come from agg-client -vv ("link c1->10.77.1.2:5800: X -> up")
# and ss. Needs root, `ip netns`, tc, ss (iproute2), curl, python3; without
# root or namespaces it prints SKIP and exits 0. Usage: netns_failover.sh
# BUILDDIR
set -euo pipefail
build=$(cd "$1" && pwd)
server_bin=$build/proxy-server/agg-server
client_bin=$build/proxy-client/agg-client

skip() { echo "SKIP: needs root and network namespaces"; exit 0; }
[ "$(id -u)" = 0 ] || skip
command -v ip >/dev/null 2>&1 || skip

ns_c=aggC$$
ns_s=aggS$$
tmp=
pids=()
cleanup() {
	local p ns
	trap - EXIT INT TERM
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for ns in "$ns_c" "$ns_s"; do
		for p in $(ip netns pids "$ns" 2>/dev/null); do
			kill -KILL "$p" 2>/dev/null || true
		done
	done
	wait 2>/dev/null || true
	# Deleting a namespace deletes its veths and its nftables tables.
	ip netns del "$ns_c" 2>/dev/null || true
	ip netns del "$ns_s" 2>/dev/null || true
	[ -z "$tmp" ] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip netns add "$ns_c" 2>/dev/null || skip
ip netns add "$ns_s" 2>/dev/null || skip
ip netns exec "$ns_c" true 2>/dev/null || skip

fail() { echo "FAIL: $*" >&2; exit 1; }
for cmd in tc curl python3 sha256sum ss; do
	command -v "$cmd" >/dev/null 2>&1 || fail "$cmd is not installed"
done
bh_method=${AGG_NETNS_BLACKHOLE:-}
if [ -z "$bh_method" ]; then
	bh_method=neigh
	! command -v nft >/dev/null 2>&1 || bh_method=nft
fi
case $bh_method in nft|neigh) ;; *) fail "AGG_NETNS_BLACKHOLE=$bh_method";; esac

tmp=$(mktemp -d /tmp/agg-netns.XXXXXX)
inc() { ip netns exec "$ns_c" "$@"; }
ins() { ip netns exec "$ns_s" "$@"; }

# On failure: what the test was doing, then the state and both logs.
fail() {
	echo "FAIL: $*" >&2
	echo "--- agg-client -v log (tail) ---" >&2
	tail -n 60 "$tmp/client.log" >&2 2>/dev/null || true
	echo "--- agg-server -v log (tail) ---" >&2
	tail -n 60 "$tmp/server.log" >&2 2>/dev/null || true
	echo "--- C: links, agg TCP connections, nftables ---" >&2
	ip -n "$ns_c" -br link >&2 2>/dev/null || true
	inc ss -tnoi "( dport = :${agg_port:-5800} )" >&2 2>/dev/null || true
	if [ "${bh_method:-}" = nft ]; then
		inc nft list ruleset >&2 2>/dev/null || true
	else
		ip -n "$ns_c" neigh >&2 2>/dev/null || true
	fi
	exit 1
}
passed=0
ok() { passed=$((passed + 1)); echo "ok $passed - $*"; }

# Waits (bounded, about $1 seconds) until a command succeeds.
wait_for() {
	local n=$(($1 * 10)) i
	shift
	for i in $(seq 1 "$n"); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	return 1
}

# --- The lab ---------------------------------------------------------------
rate=30mbit
http_port=8000
socks_port=1080
agg_port=5800
mib=$((1024 * 1024))
size=$((48 * mib))

# ARP answers only for the addresses of the asking interface, so that
# 10.77.2.2 is not reachable from c1 (Linux would otherwise take it as on-link
# for a socket bound to c1, and answer the ARP on s1).
ins sysctl -qw net.ipv4.conf.all.arp_ignore=1
ins sysctl -qw net.ipv4.conf.default.arp_ignore=1
ip -n "$ns_c" link set lo up
ip -n "$ns_s" link set lo up
for i in 1 2 3; do
	ip -n "$ns_c" link add "c$i" type veth peer name "s$i" netns "$ns_s"
	ins sysctl -qw "net.ipv4.conf.s$i.arp_ignore=1"
	ip -n "$ns_c" addr add "10.77.$i.1/24" dev "c$i"
	ip -n "$ns_s" addr add "10.77.$i.2/24" dev "s$i"
	tc -n "$ns_c" qdisc add dev "c$i" root tbf rate "$rate" burst 64kbit \
		latency 50ms
	tc -n "$ns_s" qdisc add dev "s$i" root tbf rate "$rate" burst 64kbit \
		latency 50ms
	ip -n "$ns_c" link set "c$i" up
	ip -n "$ns_s" link set "s$i" up
done

mkdir -p "$tmp/www"
head -c "$size" /dev/urandom > "$tmp/www/big"
head -c 1000 /dev/urandom > "$tmp/www/small"
big_sum=$(sha256sum < "$tmp/www/big")
echo "netns failover secret $$" > "$tmp/secret"

ip netns exec "$ns_s" python3 -m http.server "$http_port" --bind 127.0.0.1 \
	--directory "$tmp/www" >"$tmp/http.log" 2>&1 &
pids+=($!)
ip netns exec "$ns_s" "$server_bin" -v -l "tcp://0.0.0.0:$agg_port" -k "$tmp/secret" \
	>"$tmp/server.log" 2>&1 &
pids+=($!)
wait_for 15 ins curl -sf -o /dev/null "http://127.0.0.1:$http_port/small" ||
	fail "http server did not start"

# -vv: agg-client logs every link state change ("link c1->...: X -> up").
ip netns exec "$ns_c" "$client_bin" -vv -D "127.0.0.1:$socks_port" -k "$tmp/secret" \
	"tcp://10.77.1.2:$agg_port" "tcp://10.77.2.2:$agg_port" \
	"tcp://10.77.3.2:$agg_port" >"$tmp/client.log" 2>&1 &
client_pid=$!
pids+=($client_pid)

# Established agg connections from interface c$1 to its server address.
links_on() {
	inc ss -tnH state established \
		"( dst 10.77.$1.2 and dport = :$agg_port )" | grep -c . || true
}
# The state the client last logged for the link c$1 -> 10.77.$1.2.
link_state() {
	{ grep -a "link c$1->10.77.$1.2:$agg_port: [a-z]* -> " \
		"$tmp/client.log" || true; } |
		tail -n 1 | sed 's/^.* -> \([a-z]*\).*$/\1/'
}
# Succeeds when the client says every link named is up (and its TCP
# connection is established).
links_up() {
	local i
	for i in "$@"; do
		[ "$(link_state "$i")" = up ] || return 1
		[ "$(links_on "$i")" -ge 1 ] || return 1
	done
}
# Bytes sent plus received on interface c$1.
iface_bytes() {
	local rx tx
	read -r rx < <(inc cat "/sys/class/net/c$1/statistics/rx_bytes")
	read -r tx < <(inc cat "/sys/class/net/c$1/statistics/tx_bytes")
	echo $((rx + tx))
}

wait_for 20 grep -q "connected: [0-9]* links\? up" "$tmp/client.log" ||
	fail "agg-client never reported a link up"
wait_for 20 links_up 1 2 3 || fail "not one link up per interface"
# The cross pairs (c1 -> 10.77.2.2, ...) cannot work in this lab.
[ "$(inc ss -tnH state established "( dport = :$agg_port )" | grep -c .)" \
	= 3 ] || fail "more than 3 established links"
! grep -aEq 'link c([0-9])->10\.77\.([0-9])\.2:[0-9]+: [a-z]+ -> up' \
	<(grep -avE 'link c([0-9])->10\.77\.\1\.2:' "$tmp/client.log") ||
	fail "a link between non-matching interface and address came up"
wait_for 15 inc curl -sf -o /dev/null --socks5-hostname \
	"127.0.0.1:$socks_port" "http://127.0.0.1:$http_port/small" ||
	fail "no stream through agg-client"
ok "3 links up, one per interface, and a first stream through them"

# --- Downloads -------------------------------------------------------------
dl_pid=
# Starts the 48 MiB download in C (bounded by curl's own limits).
dl_start() {
	rm -f "$tmp/out" "$tmp/curl.err"
	ip netns exec "$ns_c" curl -sS -f --max-time 120 --speed-limit 1 --speed-time 40 \
		--socks5-hostname "127.0.0.1:$socks_port" \
		"http://127.0.0.1:$http_port/big" -o "$tmp/out" \
		2>"$tmp/curl.err" &
	dl_pid=$!
	pids+=($dl_pid)
}
# Waits (bounded) until the download has written at least $1 bytes.
dl_wait_size() {
	local i n
	for i in $(seq 1 600); do
		n=$(stat -c %s "$tmp/out" 2>/dev/null || echo 0)
		[ "$n" -lt "$1" ] || return 0
		kill -0 "$dl_pid" 2>/dev/null ||
			fail "download ended at $n bytes: $(cat "$tmp/curl.err")"
		sleep 0.1
	done
	fail "download stuck at $n bytes before reaching $1"
}
# Waits for the download to end and checks it byte for byte.
dl_check() {
	local what=$1 st=0 n
	wait "$dl_pid" || st=$?
	n=$(stat -c %s "$tmp/out" 2>/dev/null || echo 0)
	[ $st = 0 ] || fail "$what: curl exit $st after $n bytes:" \
		"$(cat "$tmp/curl.err")"
	[ "$n" = "$size" ] || fail "$what: got $n bytes of $size"
	[ "$(sha256sum < "$tmp/out")" = "$big_sum" ] ||
		fail "$what: content differs"
}

# A silent blackhole on the listed interfaces of C, both ways, carrier up,
# no RST: nftables drop rules in C when nft is installed, else (iproute2
# only) both ends' neighbour entries pointed at a MAC nobody has, so every
# frame is dropped by the receiving veth. AGG_NETNS_BLACKHOLE=nft|neigh
# forces one.
blackholed=()
blackhole() {
	local t=aggtest i
	blackholed=("$@")
	if [ "$bh_method" = nft ]; then
		inc nft add table inet $t
		inc nft add chain inet $t in \
			'{ type filter hook input priority 0; }'
		inc nft add chain inet $t out \
			'{ type filter hook output priority 0; }'
		for i in "$@"; do
			inc nft add rule inet $t in iifname "c$i" drop
			inc nft add rule inet $t out oifname "c$i" drop
		done
		return
	fi
	for i in "$@"; do
		ip -n "$ns_c" neigh replace "10.77.$i.2" lladdr 02:00:00:77:00:0$i \
			nud permanent dev "c$i"
		ip -n "$ns_s" neigh replace "10.77.$i.1" lladdr 02:00:00:77:01:0$i \
			nud permanent dev "s$i"
	done
}
unblackhole() {
	local i
	if [ "$bh_method" = nft ]; then
		inc nft delete table inet aggtest
	else
		for i in "${blackholed[@]}"; do
			ip -n "$ns_c" neigh del "10.77.$i.2" dev "c$i"
			ip -n "$ns_s" neigh del "10.77.$i.1" dev "s$i"
		done
	fi
	blackholed=()
}

# 1. Baseline: all three links carry the download.
declare -A before
for i in 1 2 3; do before[$i]=$(iface_bytes $i); done
dl_start
dl_check "baseline"
split=
for i in 1 2 3; do
	d=$(($(iface_bytes $i) - before[$i]))
	[ $d -ge $((size / 16)) ] ||
		fail "c$i carried only $d bytes of the 48 MiB download"
	split="$split c$i $((d / mib)) MiB"
done
ok "48 MiB over 3 links intact, each carried over 3 MiB:$split"

# 2. Carrier loss on c2 mid-download.
dl_start
dl_wait_size $((10 * mib))
ip -n "$ns_c" link set c2 down
dl_check "carrier loss on c2"
[ "$(link_state 2)" = closed ] ||
	fail "the link on c2 is '$(link_state 2)' while c2 is down"
[ "$(links_on 2)" = 0 ] || fail "a link on c2 is established while down"
ok "48 MiB intact while c2 lost its carrier at 10 MiB"
ip -n "$ns_c" link set c2 up
wait_for 60 links_up 2 || fail "the link on c2 did not come back"
ok "the link on c2 is up again after its carrier returned"

# 3. Silent blackhole on c1 mid-download.
dl_start
dl_wait_size $((10 * mib))
blackhole 1
dl_check "blackhole on c1"
st1=$(link_state 1)
[ "$st1" = stalled ] || [ "$st1" = closed ] ||
	fail "the blackholed link on c1 is '$st1', not stalled or closed"
ok "48 MiB intact while c1 was blackholed ($bh_method) at 10 MiB (link $st1)"
unblackhole
wait_for 60 links_up 1 || fail "the link on c1 did not come back"
ok "the link on c1 is up again after the blackhole was lifted"

# 4. The links that came back carry a download alone.
for alone in 1 2; do
	others=()
	for i in 1 2 3; do [ $i = $alone ] || others+=($i); done
	wait_for 60 links_up 1 2 3 || fail "not all links up before c$alone alone"
	blackhole "${others[@]}"
	b=$(iface_bytes $alone)
	dl_start
	dl_check "c$alone alone"
	d=$(($(iface_bytes $alone) - b))
	[ $d -ge $size ] || fail "c$alone alone carried only $d bytes"
	for i in "${others[@]}"; do
		[ "$(link_state $i)" != up ] ||
			fail "the blackholed link on c$i is still up"
	done
	unblackhole
	ok "48 MiB intact over c$alone alone (c${others[0]}, c${others[1]} blackholed)"
done

# 5. The SOCKS reply codes that need a real network: S has no route to
# 10.99.0.0/16 (network unreachable, 3), and S drops SYNs to its own port 9
# so the dialer's 10 s connect timeout fires (timeout, 6).
out=$(inc curl -sS --max-time 60 --socks5 "127.0.0.1:$socks_port" \
	http://10.99.0.1:80/ 2>&1 || true)
case $out in *"(3)"*) ;; *) fail "unroutable destination: $out";; esac
ok "unroutable destination gives SOCKS reply 3"
if command -v nft >/dev/null 2>&1; then
	ins nft add table inet aggto
	ins nft add chain inet aggto out '{ type filter hook output priority 0; }'
	ins nft add rule inet aggto out tcp dport 9 drop
	out=$(inc curl -sS --max-time 60 --socks5 "127.0.0.1:$socks_port" \
		http://127.0.0.1:9/ 2>&1 || true)
	ins nft delete table inet aggto
	case $out in *"(6)"*) ;; *) fail "silent destination: $out";; esac
	ok "a destination that never answers gives SOCKS reply 6"
else
	echo "ok - SKIP reply 6: needs nft"
fi

# 6. SIGTERM ends agg-client.
kill -TERM "$client_pid"
for i in $(seq 1 100); do
	kill -0 "$client_pid" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$client_pid" 2>/dev/null && fail "agg-client still running 10 s after SIGTERM"
st=0
wait "$client_pid" || st=$?
[ $st = 0 ] || fail "agg-client exited with $st after SIGTERM"
grep -aq "terminated: shutting down" "$tmp/client.log" ||
	fail "agg-client did not log its SIGTERM shutdown"
ok "agg-client exits with status 0 after SIGTERM"

echo "$passed passed, 0 failed"
