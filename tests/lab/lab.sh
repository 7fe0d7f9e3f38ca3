#!/usr/bin/env bash
# lab.sh: the link lab. A client and a server network namespace joined by N
# links, each with its own rate per direction and one-way delay, and faults
# on demand. Needs root, iproute2 (ip, tc) and nftables (for blackhole and
# loss); links with delay need the lab-delay program (built by meson in
# BUILD/tests/lab/).
#
#   lab.sh up NAME [--delay-bin PATH] --link SPEC [--link SPEC]...
#   lab.sh fault NAME LINK down|up|blackhole|restore|loss PCT|rate RATE[/RATE]
#   lab.sh exec NAME c|s|m CMD...    run CMD in the client, server or middle
#                                    namespace
#   lab.sh run NAME [up options] -- CMD...
#                                    up, run CMD (environment LAB_C, LAB_S,
#                                    LAB_LINKS), down: also on error or SIGINT
#   lab.sh show NAME                 links, qdiscs and fault tables
#   lab.sh down NAME                 ends the lab's processes, deletes its
#                                    namespaces (and with them its veths,
#                                    qdiscs and nftables tables)
#
# NAME ([A-Za-z0-9_-], at most 24) makes everything unique: the namespaces
# are NAME-c (client), NAME-s (server) and NAME-m (middle), the state lives
# in /run/agg-lab/NAME. Two labs with different names run side by side.
#
# SPEC is RATE[/RATE_DOWN][:DELAY[/DELAY_DOWN]]:
#   RATE       tc rate of both directions (50mbit, 1gbit, ...), or "none"
#              for an unshaped link; RATE_DOWN, if given, is the rate from
#              server to client
#   DELAY      one-way delay of both directions (5ms, 250us, 0); DELAY_DOWN,
#              if given, that of server to client
# Link i (from 1, in the order given) is interface c<i> with 10.99.<i>.1/24
# in NAME-c and s<i> with 10.99.<i>.2/24 in NAME-s. The server namespace
# answers ARP only on the interface owning the address, so each server
# address is reachable through its own link only: agg-client's default link
# filter then gives exactly one working link per interface. The server also
# has 10.99.0.2 (on lo), reachable over every link: the client routes by
# source address (from 10.99.<i>.1 via c<i>, anything else via c1), so
# kernel MPTCP with an endpoint per client address uses every link.
#
# How the rate is made: tbf on c<i> (client to server) and on s<i> (server
# to client), latency 50ms, burst max(16 KiB, 2 ms of the rate).
# How the delay is made (no netem on these kernels): a link without delay
# is one veth pair c<i>-s<i>. A link with delay is two veth pairs through
# NAME-m: c<i>-mc<i> and ms<i>-s<i>; in NAME-m one lab-delay process per
# link bridges mc<i> and ms<i> with AF_PACKET sockets and holds every frame
# for the link's one-way delay (bounded FIFO per direction, 8 MiB).
# Faults (all silent unless said):
#   down / up        carrier loss: c<i> down (and ms<i>, so that s<i> loses
#                    its carrier as with a direct veth) / back up
#   blackhole        nftables netdev ingress drop on c<i> and on s<i>: both
#                    directions vanish, no RST, no ICMP, carrier stays up
#   restore          removes the blackhole (and any loss)
#   loss PCT         drops PCT % (0-100, one decimal) of the frames arriving
#                    at c<i> and at s<i> (nftables numgen random); loss 0
#                    removes it
#   rate RATE[/RATE] changes the tbf rate while running
set -euo pipefail

lab_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
state_root=/run/agg-lab

die() { echo "lab.sh: $*" >&2; exit 1; }
usage() { echo "lab.sh: $*" >&2; echo "usage: see the top of $0" >&2; exit 2; }

check_name() {
	[[ $1 =~ ^[A-Za-z0-9_-]{1,24}$ ]] ||
		usage "bad lab name '$1': expected [A-Za-z0-9_-], at most 24"
}

# Bytes per second of a tc rate ("50mbit", "1gbit", "800kbit", "1000000").
rate_bytes() {
	local r=${1,,} n unit
	[[ $r =~ ^([0-9]+(\.[0-9]+)?)([kmg]?bit|[kmg]?bps)?$ ]] ||
		usage "bad rate '$1': expected e.g. 50mbit"
	n=${BASH_REMATCH[1]}
	unit=${BASH_REMATCH[3]:-bit}
	awk -v n="$n" -v u="$unit" 'BEGIN {
		m = 1; if (u ~ /^k/) m = 1e3; if (u ~ /^m/) m = 1e6;
		if (u ~ /^g/) m = 1e9; if (u ~ /bit$/) m /= 8;
		printf "%d\n", n * m }'
}

# Microseconds of a delay ("5ms", "250us", "0", "1s").
delay_us() {
	local d=${1,,}
	[[ $d =~ ^([0-9]+(\.[0-9]+)?)(us|ms|s)?$ ]] ||
		usage "bad delay '$1': expected e.g. 5ms"
	awk -v n="${BASH_REMATCH[1]}" -v u="${BASH_REMATCH[3]:-ms}" 'BEGIN {
		m = 1000; if (u == "us") m = 1; if (u == "s") m = 1e6;
		printf "%d\n", n * m }'
}

# Sets (verb add or change) tbf at rate $4 on interface $3 of namespace $2.
shape() {
	local verb=$1 ns=$2 dev=$3 rate=$4 bps burst
	if [ "$rate" = none ]; then
		[ "$verb" = add ] || tc -n "$ns" qdisc del dev "$dev" root \
			2>/dev/null || true
		return 0
	fi
	bps=$(rate_bytes "$rate")
	burst=$((bps / 500))
	[ "$burst" -ge 16384 ] || burst=16384
	if [ "$verb" = change ] && ! tc -n "$ns" qdisc show dev "$dev" |
		grep -q tbf; then
		verb=add
	fi
	tc -n "$ns" qdisc "$verb" dev "$dev" root tbf rate "$rate" \
		burst "$burst" latency 50ms
}

# Everything of lab $1 goes: processes, namespaces, state.
lab_down() {
	local name=$1 ns p
	for ns in "$name-c" "$name-s" "$name-m"; do
		for p in $(ip netns pids "$ns" 2>/dev/null); do
			kill -TERM "$p" 2>/dev/null || true
		done
	done
	for p in $(seq 1 20); do
		[ -n "$(ip netns pids "$name-m" 2>/dev/null; \
			ip netns pids "$name-c" 2>/dev/null; \
			ip netns pids "$name-s" 2>/dev/null)" ] || break
		sleep 0.1
	done
	for ns in "$name-c" "$name-s" "$name-m"; do
		for p in $(ip netns pids "$ns" 2>/dev/null); do
			kill -KILL "$p" 2>/dev/null || true
		done
		ip netns del "$ns" 2>/dev/null || true
	done
	rm -rf "${state_root:?}/$name"
}

# up NAME [--delay-bin PATH] --link SPEC...
lab_up() {
	local name=$1 delay_bin="" specs=() i spec rates delays up down dup ddown
	local c s m st
	shift
	while [ $# -gt 0 ]; do
		case $1 in
		--link) [ $# -ge 2 ] || usage "--link needs a SPEC"
			specs+=("$2"); shift 2;;
		--delay-bin) [ $# -ge 2 ] || usage "--delay-bin needs a PATH"
			delay_bin=$2; shift 2;;
		*) usage "unknown argument '$1' to up";;
		esac
	done
	[ ${#specs[@]} -ge 1 ] || usage "up needs at least one --link SPEC"
	[ ${#specs[@]} -le 250 ] || usage "at most 250 links"
	c=$name-c s=$name-s m=$name-m st=$state_root/$name
	[ ! -e "$st" ] && ! ip netns list | grep -qw "^$c" ||
		die "lab '$name' exists (lab.sh down $name)"
	if [ -z "$delay_bin" ]; then
		for delay_bin in "${LAB_DELAY_BIN:-}" \
			"$lab_dir/../../build/tests/lab/lab-delay"; do
			[ -z "$delay_bin" ] || [ ! -x "$delay_bin" ] || break
		done
	fi
	# A failure half way leaves nothing behind.
	trap 'lab_down "$name"; exit 130' INT TERM
	trap 'st_=$?; [ $st_ = 0 ] || lab_down "$name"' EXIT
	mkdir -p "$st"
	ip netns add "$c"
	ip netns add "$s"
	ip netns add "$m"
	for ns in "$c" "$s" "$m"; do ip -n "$ns" link set lo up; done
	ip netns exec "$s" sysctl -qw net.ipv4.conf.all.arp_ignore=1
	ip netns exec "$s" sysctl -qw net.ipv4.conf.default.arp_ignore=1
	ip netns exec "$m" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
	ip netns exec "$m" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
	i=0
	for spec in "${specs[@]}"; do
		i=$((i + 1))
		rates=${spec%%:*}
		delays=0
		[ "$rates" = "$spec" ] || delays=${spec#*:}
		up=${rates%%/*} down=${rates#*/}
		dup=$(delay_us "${delays%%/*}") ddown=$(delay_us "${delays#*/}")
		[ "$up" = none ] || rate_bytes "$up" >/dev/null
		[ "$down" = none ] || rate_bytes "$down" >/dev/null
		if [ "$dup" = 0 ] && [ "$ddown" = 0 ]; then
			ip -n "$c" link add "c$i" type veth peer name "s$i" \
				netns "$s"
		else
			[ -x "$delay_bin" ] || die "link $i has delay but there" \
				"is no lab-delay (build it, or --delay-bin PATH)"
			ip -n "$c" link add "c$i" type veth peer name "mc$i" \
				netns "$m"
			ip -n "$s" link add "s$i" type veth peer name "ms$i" \
				netns "$m"
			ip -n "$m" link set "mc$i" up promisc on
			ip -n "$m" link set "ms$i" up promisc on
			ip netns exec "$m" setsid "$delay_bin" "mc$i" "ms$i" \
				"$dup" "$ddown" </dev/null \
				>>"$st/delay$i.log" 2>&1 &
		fi
		ip netns exec "$s" sysctl -qw "net.ipv4.conf.s$i.arp_ignore=1"
		ip -n "$c" addr add "10.99.$i.1/24" dev "c$i"
		ip -n "$s" addr add "10.99.$i.2/24" dev "s$i"
		shape add "$c" "c$i" "$up"
		shape add "$s" "s$i" "$down"
		ip -n "$c" link set "c$i" up
		ip -n "$s" link set "s$i" up
		echo "$i $up $down $dup $ddown" >> "$st/links"
	done
	# 10.99.0.2 on the server's lo is reachable over every link: traffic
	# from 10.99.<i>.1 goes out of c<i> (policy routing), other traffic
	# over link 1. Kernel MPTCP then makes one subflow per client address.
	ip -n "$s" addr add 10.99.0.2/32 dev lo
	ip -n "$c" route add 10.99.0.2/32 via 10.99.1.2 dev c1 onlink
	for i in $(seq 1 ${#specs[@]}); do
		ip -n "$c" rule add from "10.99.$i.1" table $((100 + i))
		ip -n "$c" route add 10.99.0.2/32 via "10.99.$i.2" dev "c$i" \
			onlink table $((100 + i))
	done
	# The delay lines must be running (they bind at start).
	sleep 0.2
	i=0
	for spec in "${specs[@]}"; do
		i=$((i + 1))
		[ ! -e "$st/delay$i.log" ] || ! grep -q . "$st/delay$i.log" ||
			die "lab-delay of link $i: $(cat "$st/delay$i.log")"
	done
	trap - INT TERM EXIT
	echo "lab $name up: ${#specs[@]} links; client namespace $c," \
		"server namespace $s"
}

# The number of links of lab $1.
lab_links() {
	[ -f "$state_root/$1/links" ] || die "no lab '$1'"
	wc -l < "$state_root/$1/links"
}

# fault NAME LINK KIND [ARG]
lab_fault() {
	local name=$1 i=$2 kind=$3 c=$1-c s=$1-s m=$1-m n pct line up down
	n=$(lab_links "$name")
	[[ $i =~ ^[0-9]+$ ]] && [ "$i" -ge 1 ] && [ "$i" -le "$n" ] ||
		usage "bad link '$i': lab '$name' has links 1 to $n"
	case $kind in
	down)
		ip -n "$c" link set "c$i" down
		! ip -n "$m" link show "ms$i" >/dev/null 2>&1 ||
			ip -n "$m" link set "ms$i" down;;
	up)
		! ip -n "$m" link show "ms$i" >/dev/null 2>&1 ||
			ip -n "$m" link set "ms$i" up
		ip -n "$c" link set "c$i" up;;
	blackhole)
		drop_table "$c" "labbh$i" "c$i" drop
		drop_table "$s" "labbh$i" "s$i" drop;;
	restore)
		for ns in "$c" "$s"; do
			ip netns exec "$ns" nft delete table netdev "labbh$i" \
				2>/dev/null || true
			ip netns exec "$ns" nft delete table netdev "labloss$i" \
				2>/dev/null || true
		done;;
	loss)
		[ $# -ge 4 ] || usage "loss needs PCT"
		[[ $4 =~ ^[0-9]+(\.[0-9])?$ ]] || usage "bad loss '$4'"
		pct=$(awk -v p="$4" 'BEGIN { printf "%d", p * 10 }')
		[ "$pct" -le 1000 ] || usage "bad loss '$4': at most 100"
		for ns in "$c" "$s"; do
			ip netns exec "$ns" nft delete table netdev "labloss$i" \
				2>/dev/null || true
		done
		if [ "$pct" -gt 0 ]; then
			drop_table "$c" "labloss$i" "c$i" \
				"numgen random mod 1000 < $pct drop"
			drop_table "$s" "labloss$i" "s$i" \
				"numgen random mod 1000 < $pct drop"
		fi;;
	rate)
		[ $# -ge 4 ] || usage "rate needs RATE"
		up=${4%%/*} down=${4#*/}
		shape change "$c" "c$i" "$up"
		shape change "$s" "s$i" "$down"
		line=$(awk -v i="$i" -v u="$up" -v d="$down" \
			'$1 == i { $2 = u; $3 = d } { print }' \
			"$state_root/$name/links")
		echo "$line" > "$state_root/$name/links";;
	*) usage "bad fault '$kind': expected down, up, blackhole, restore," \
		"loss PCT or rate RATE";;
	esac
}

# A netdev table $2 in namespace $1 with an ingress chain on $3 and rule $4.
drop_table() {
	local ns=$1 t=$2 dev=$3 rule=$4
	ip netns exec "$ns" nft delete table netdev "$t" 2>/dev/null || true
	ip netns exec "$ns" nft -f - <<-EOF
	table netdev $t {
		chain in {
			type filter hook ingress device "$dev" priority 0;
			$rule
		}
	}
	EOF
}

# show NAME
lab_show() {
	local name=$1 ns
	lab_links "$name" >/dev/null
	echo "# link up down delay_up_us delay_down_us"
	cat "$state_root/$name/links"
	for ns in "$name-c" "$name-s"; do
		echo "# $ns"
		ip -n "$ns" -br addr
		tc -n "$ns" qdisc show | grep tbf || true
		ip netns exec "$ns" nft list tables 2>/dev/null || true
	done
}

[ $# -ge 1 ] || usage "missing subcommand"
cmd=$1
shift
[ "$(id -u)" = 0 ] || die "needs root"
case $cmd in
up)
	[ $# -ge 1 ] || usage "up needs NAME"
	check_name "$1"
	lab_up "$@";;
down)
	[ $# -eq 1 ] || usage "down needs NAME"
	check_name "$1"
	lab_down "$1";;
fault)
	[ $# -ge 3 ] || usage "fault needs NAME LINK KIND"
	check_name "$1"
	lab_fault "$@";;
exec)
	[ $# -ge 3 ] || usage "exec needs NAME c|s|m CMD"
	check_name "$1"
	case $2 in c|s|m) ;; *) usage "bad namespace '$2': c, s or m";; esac
	ns=$1-$2
	shift 2
	exec ip netns exec "$ns" "$@";;
show)
	[ $# -eq 1 ] || usage "show needs NAME"
	check_name "$1"
	lab_show "$1";;
run)
	[ $# -ge 1 ] || usage "run needs NAME"
	check_name "$1"
	name=$1
	shift
	upargs=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do upargs+=("$1"); shift; done
	[ $# -ge 2 ] || usage "run needs -- CMD"
	shift
	trap 'lab_down "$name"' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	(lab_up "$name" "${upargs[@]}")
	st=0
	LAB_C=$name-c LAB_S=$name-s LAB_LINKS=$(lab_links "$name") "$@" || st=$?
	exit $st;;
*) usage "unknown subcommand '$cmd'";;
esac
