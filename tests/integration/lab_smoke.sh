#!/usr/bin/env bash
# A short run of the link lab (tests/lab/lab.sh): two links, the second
# through the lab-delay bridge with 10 ms one-way delay; agg-client in the
# client namespace, agg-server in the server namespace, a stream through
# agg-client -L checked byte for byte by bench-flow (both links carry part
# of it); the same while link 1 is silently blackholed (the nftables tables
# exist in both namespaces, and are gone after restore); lab down leaves no
# namespace and no state. Asserts bytes and states, never timings. Needs
# root; without it prints SKIP and exits 0. Usage: lab_smoke.sh BUILDDIR
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
lab=$here/../lab/lab.sh
flow=$build/tests/bench/bench-flow
server_bin=$build/proxy-server/agg-server
client_bin=$build/proxy-client/agg-client
export LAB_DELAY_BIN=$build/tests/lab/lab-delay

[ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 0; }

name=labsmoke$$
tmp=
up=0
cleanup() {
	trap - EXIT INT TERM
	[ $up = 0 ] || "$lab" down "$name" || true
	[ -z "$tmp" ] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

tmp=$(mktemp -d /tmp/agg-labsmoke.XXXXXX)
fail() {
	echo "FAIL: $*" >&2
	echo "--- agg-client log (tail) ---" >&2
	tail -n 30 "$tmp/client.log" >&2 2>/dev/null || true
	"$lab" show "$name" >&2 2>/dev/null || true
	exit 1
}
passed=0
ok() { passed=$((passed + 1)); echo "ok $passed - $*"; }
for f in "$flow" "$LAB_DELAY_BIN" "$server_bin" "$client_bin"; do
	[ -x "$f" ] || fail "$f is not built"
done
inc() { ip netns exec "$name-c" "$@"; }
rx() { inc cat "/sys/class/net/c$1/statistics/rx_bytes"; }

"$lab" up "$name" --link 20mbit --link 20mbit:10ms >/dev/null
up=1
for ns in "$name-c" "$name-s" "$name-m"; do
	ip netns list | grep -qw "^$ns" || fail "no namespace $ns"
done
[ -n "$(ip netns pids "$name-m")" ] || fail "no lab-delay in $name-m"
ok "lab up: 2 links, link 2 through lab-delay"

echo "lab smoke $$" > "$tmp/secret"
ip netns exec "$name-s" "$flow" serve 7001 send 2 >/dev/null 2>&1 &
ip netns exec "$name-s" "$server_bin" -l tcp://0.0.0.0:5800 -k "$tmp/secret" \
	>"$tmp/server.log" 2>&1 &
ip netns exec "$name-c" "$client_bin" -vv -k "$tmp/secret" \
	-L 127.0.0.1:7100:127.0.0.1:7001 tcp://10.99.1.2:5800 \
	tcp://10.99.2.2:5800 >"$tmp/client.log" 2>&1 &
for i in $(seq 1 200); do
	[ "$(inc ss -tnH state established '( dport = :5800 )' | grep -c .)" \
		-lt 2 ] || break
	sleep 0.1
done
[ "$(inc ss -tnH state established '( dport = :5800 )' | grep -c .)" -ge 2 ] ||
	fail "agg-client has fewer than 2 links up"
ok "agg-client has a link over each lab link"

# fetch_ok WHAT: a stream through agg-client -L, intact and complete.
fetch_ok() {
	local line
	line=$(inc "$flow" fetch -t 60 127.0.0.1 7100) || fail "$1: $line"
	case $line in *bad_offset=-1*eof=1*) ;; *) fail "$1: $line";; esac
	case $line in bytes=0\ *) fail "$1: no bytes";; esac
	echo "$line"
}
a1=$(rx 1) a2=$(rx 2)
line=$(fetch_ok "both links")
d1=$(($(rx 1) - a1)) d2=$(($(rx 2) - a2))
[ $d1 -ge 65536 ] || fail "link 1 carried only $d1 bytes"
[ $d2 -ge 65536 ] || fail "link 2 (delayed) carried only $d2 bytes"
ok "stream intact over both links (${line%% *}; link 1 $d1, link 2 $d2 bytes)"

"$lab" fault "$name" 1 blackhole
for ns in "$name-c" "$name-s"; do
	ip netns exec "$ns" nft list tables | grep -q 'netdev labbh1' ||
		fail "no blackhole table in $ns"
done
# The counters of c1 still count what its ingress hook drops: link 2
# must have carried the whole stream.
a2=$(rx 2)
line=$(fetch_ok "link 1 blackholed")
d2=$(($(rx 2) - a2))
bytes=${line%% *}
bytes=${bytes#bytes=}
[ $d2 -ge "$bytes" ] || fail "link 2 carried $d2 of $bytes bytes"
ok "stream intact with link 1 blackholed ($bytes bytes, all over link 2)"
"$lab" fault "$name" 1 restore
for ns in "$name-c" "$name-s"; do
	! ip netns exec "$ns" nft list tables | grep -q labbh1 ||
		fail "blackhole table left in $ns after restore"
done
ok "restore removes the blackhole tables"

"$lab" down "$name"
up=0
! ip netns list | grep -q "^$name-" || fail "namespaces left: $(ip netns list)"
[ ! -e "/run/agg-lab/$name" ] || fail "state left in /run/agg-lab/$name"
ok "lab down leaves no namespace and no state"
echo "$passed passed, 0 failed"
