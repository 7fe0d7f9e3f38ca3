#!/usr/bin/env bash
# The monitor gives the terminal back however the program is stopped:
# agg-server and agg-client run with their monitor in a tmux pane whose
# shell saves `stty -g` before and after; Ctrl-C (SIGINT), Ctrl-\ (SIGQUIT),
# kill -TERM, kill -HUP, and SIGINT and SIGTERM arriving together each end
# the program with status 0 and the terminal modes exactly as they were
# (echo and canonical input back on).
# A client started in the background gets no monitor and keeps running.
# Usage: monitor_signals.sh BUILDDIR
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
build=$(cd "$1" && pwd)
server_bin=$build/proxy-server/agg-server
client_bin=$build/proxy-client/agg-client
tmp=$(mktemp -d /tmp/agg-monsig.XXXXXX)
tag=aggmonsig$$
export TMUX_TMPDIR=$tmp
server_pid=
cleanup() {
	tmux kill-server 2>/dev/null || true
	if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
# One session lives as long as the test: the tmux server exits with its
# last session, and a new-session racing that exit fails with "server
# exited unexpectedly" (seen once in CI).
tmux new-session -d -s "$tag-keep" "sleep 3600"

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok $((passed + failed)) - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok $((passed + failed)) - $*"; }

# Waits (at most 15 s) until the screen of tmux session $1 matches $2.
screen_has() {
	local i
	for i in $(seq 1 75); do
		if tmux capture-pane -p -t "$1" | grep -Eq -- "$2"; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}

# Waits (at most 10 s) for file $1 to be written; prints it.
wait_file() {
	local i
	for i in $(seq 1 50); do
		if [ -s "$1" ]; then cat "$1"; return 0; fi
		sleep 0.2
	done
	echo timeout
}

echo "monitor signal test secret" > "$tmp/secret"
port=$(free_port)

# run NAME BANNER HOW COMMAND: starts COMMAND in a pane, waits for its
# monitor (BANNER on screen), stops it (HOW: a key to send, or TERM) and
# checks its exit status and the terminal modes afterwards.
run() {
	local name=$1 banner=$2 how=$3 cmd=$4 s=$tag-$1-$3 pid status
	local d=$tmp/$name-$how
	mkdir -p "$d"
	# In the foreground of the pane (a background job would get
	# /dev/null as stdin and ignore SIGINT and SIGQUIT).
	printf 'echo $$ > %s/pid\nexec %s\n' "$d" "$cmd" > "$d/run.sh"
	tmux new-session -d -s "$s" -x 120 -y 40 \
		"stty -g > '$d/before'; sh '$d/run.sh'; echo \$? > '$d/exit'; stty -g > '$d/after'; sleep 60"
	if ! screen_has "$s" "$banner"; then
		not_ok "$name: no monitor on screen"
		tmux capture-pane -p -t "$s" >&2 || true
		return
	fi
	case $how in
	TERM|HUP) kill -"$how" "$(wait_file "$d/pid")" ;;
	INT+TERM)
		# Both at once (held while stopped): the second one leaves the
		# loop before the first one's shutdown step has run.
		pid=$(wait_file "$d/pid")
		kill -STOP "$pid"
		kill -INT "$pid"
		kill -TERM "$pid"
		kill -CONT "$pid" ;;
	*) tmux send-keys -t "$s" -H "$how" ;;
	esac
	status=$(wait_file "$d/exit")
	wait_file "$d/after" >/dev/null
	if [ "$status" = 0 ] && [ -s "$d/after" ] &&
	    cmp -s "$d/before" "$d/after"; then
		ok "$name stopped by $how: exit 0, terminal modes restored"
	else
		not_ok "$name stopped by $how: exit '$status', modes" \
		    "'$(cat "$d/before")' -> '$(cat "$d/after" 2>/dev/null)'"
	fi
	tmux kill-session -t "$s" 2>/dev/null || true
}

# The server the clients' links reach.
"$server_bin" -l "tcp://127.0.0.1:$port" -k "$tmp/secret" --no-monitor \
	2>"$tmp/server.log" &
server_pid=$!
socks_port=$(free_port)
srv_port=$(free_port)

# 03 is Ctrl-C (SIGINT), 1c is Ctrl-\ (SIGQUIT).
for how in 03 1c TERM HUP INT+TERM; do
	run server '^agg-server +0 sessions +q: quit' "$how" \
	    "'$server_bin' -l 'tcp://127.0.0.1:$srv_port' -k '$tmp/secret'"
	run client 'links 1/1 up' "$how" \
	    "'$client_bin' -k '$tmp/secret' -D 127.0.0.1:$socks_port tcp://127.0.0.1:$port"
done

# A background job (`agg-client ... &` in an interactive shell) gets no
# monitor by default: taking the terminal from the background would stop
# it (SIGTTOU, "Stopped (tty output)") before it serves anything.
bg=$tmp/bg
mkdir -p "$bg"
tmux new-session -d -s "$tag-bg" -x 120 -y 40 "bash --norc --noprofile -i"
sleep 0.5
tmux send-keys -t "$tag-bg" "'$client_bin' -k '$tmp/secret' -D 127.0.0.1:$(free_port) tcp://127.0.0.1:$port 2>'$bg/log' & echo \$! > '$bg/pid'; sleep 2; jobs -l > '$bg/jobs'; kill -KILL %1; echo done > '$bg/done'" Enter
wait_file "$bg/done" >/dev/null
if grep -q Running "$bg/jobs"; then
	ok "client started in the background keeps running, without monitor"
else
	not_ok "client started in the background: $(cat "$bg/jobs")"
fi
tmux kill-session -t "$tag-bg" 2>/dev/null || true

echo "# $passed passed, $failed failed"
[ "$failed" = 0 ]
