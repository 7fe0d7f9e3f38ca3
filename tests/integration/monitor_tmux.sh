#!/usr/bin/env bash
# The link monitor under tmux (120x40): agg-server and agg-client each in
# a tmux session of their own, their monitor on by default (a terminal).
# The client's three links (127.0.0.1, 127.0.0.2 through a TCP forwarder,
# [::1]) appear with their remote addresses and "up", a fourth to a closed
# port "down" with the dial's error; killing the forwarder turns its link
# "down" (and the server's view loses it); "a" hides and shows the links
# not connected; a resize redraws; "q" quits both with exit status 0.
# Usage: monitor_tmux.sh BUILDDIR
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
build=$(cd "$1" && pwd)
server_bin=$build/proxy-server/agg-server
client_bin=$build/proxy-client/agg-client
tmp=$(mktemp -d /tmp/agg-mon.XXXXXX)
tag=aggmon$$
export TMUX_TMPDIR=$tmp
pids=()
cleanup() {
	tmux kill-server 2>/dev/null || true
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

fail() {
	echo "FAIL: $*" >&2
	for s in srv cli; do
		echo "--- $s screen:" >&2
		tmux capture-pane -p -t "$tag-$s" >&2 2>/dev/null || true
	done
	exit 1
}
passed=0
ok() { passed=$((passed + 1)); echo "ok $passed - $*"; }

# Waits (at most 15 s) until the screen of tmux session $1 matches the
# extended regular expression $2.
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

# Waits (at most 10 s) for the exit status file $1.
exit_status() {
	local i
	for i in $(seq 1 50); do
		if [ -s "$1" ]; then cat "$1"; return 0; fi
		sleep 0.2
	done
	echo timeout
}

echo "monitor test secret" > "$tmp/secret"
port=$(free_port)
fwd_port=$(free_port)
hold_closed_port

# A TCP forwarder 127.0.0.2:fwd_port -> 127.0.0.1:port, to cut one link.
python3 - "$fwd_port" "$port" >"$tmp/fwd.log" 2>&1 <<'PY' &
import socket, sys, threading
lsock = socket.socket()
lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lsock.bind(("127.0.0.2", int(sys.argv[1])))
lsock.listen(8)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
while True:
    c, _ = lsock.accept()
    u = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
    threading.Thread(target=pipe, args=(c, u), daemon=True).start()
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
PY
fwd_pid=$!
pids+=($fwd_pid)

tmux new-session -d -s "$tag-srv" -x 120 -y 40 \
	"'$server_bin' -l 'tcp://[::]:$port' -k '$tmp/secret'; echo \$? > '$tmp/srv.exit'; sleep 60"
screen_has "$tag-srv" '^agg-server +0 sessions +q: quit' ||
	fail "no server monitor"
screen_has "$tag-srv" '^no session$' || fail "no 'no session' line"
ok "agg-server's monitor shows up with no session"

tmux new-session -d -s "$tag-cli" -x 120 -y 40 \
	"'$client_bin' -D 127.0.0.1:$(free_port) -k '$tmp/secret' 'tcp://127.0.0.1:$port' 'tcp://127.0.0.2:$fwd_port' 'tcp://[::1]:$port' 'tcp://127.0.0.1:$closed_port'; echo \$? > '$tmp/cli.exit'; sleep 60"
for remote in "127\\.0\\.0\\.1:$port" "127\\.0\\.0\\.2:$fwd_port" \
	"\\[::1\\]:$port"; do
	screen_has "$tag-cli" "^  tcp +lo -> $remote +up " ||
		fail "no up line for $remote"
done
screen_has "$tag-cli" '^session [0-9a-f]{8} +links 3/4 up' ||
	fail "no session line"
ok "agg-client's monitor lists the 3 links up with their remote addresses"
screen_has "$tag-cli" "^  tcp +lo -> 127\\.0\\.0\\.1:$closed_port +down .* connection refu" ||
	fail "no down line for the closed port"
ok "the link to a closed port is down: connection refused"
screen_has "$tag-srv" '^session [0-9a-f]{8} +links 3/3 up' ||
	fail "server: no session with 3 links"
[ "$(tmux capture-pane -p -t "$tag-srv" | grep -Ec '^  tcp +from .* up ')" = 3 ] ||
	fail "server: not 3 link lines"
screen_has "$tag-srv" '^[0-9:]{8} [0-9a-f]{8}: new session$' ||
	fail "server: no new-session event"
ok "agg-server's monitor lists the session and its 3 links, and its event"

kill "$fwd_pid"
screen_has "$tag-cli" "^  tcp +lo -> 127\\.0\\.0\\.2:$fwd_port +down " ||
	fail "the cut link is not shown down"
screen_has "$tag-cli" '^session [0-9a-f]{8} +links 2/4 up' ||
	fail "session line does not show 2 links"
screen_has "$tag-cli" "lo->127\\.0\\.0\\.2:$fwd_port: down" ||
	fail "no down event"
ok "the cut link turns down: $(tmux capture-pane -p -t "$tag-cli" | grep -E "127\.0\.0\.2:$fwd_port +down" | head -1 | tr -s ' ')"
screen_has "$tag-srv" '^session [0-9a-f]{8} +links 2/2 up' ||
	fail "server: the cut link is still counted"
ok "agg-server's monitor sees the session lose the link"

tmux send-keys -t "$tag-cli" a
screen_has "$tag-cli" '2 links not connected hidden: press a' ||
	fail "a does not hide the down links"
tmux capture-pane -p -t "$tag-cli" | grep -q "127\\.0\\.0\\.2:$fwd_port +down" &&
	fail "the down link is still shown after a"
tmux send-keys -t "$tag-cli" a
screen_has "$tag-cli" "127\\.0\\.0\\.2:$fwd_port +down" ||
	fail "a again does not show the down link"
ok "a hides and shows the link that is not connected"

# The title line's clock sits near the right edge: it moves left when the
# window narrows.
title_len() { tmux capture-pane -p -t "$tag-cli" | head -1 | awk '{ print length($0) }'; }
before=$(title_len)
tmux resize-window -t "$tag-cli" -x 100 -y 30
for i in $(seq 1 50); do
	[ "$(title_len)" -lt "$before" ] && break
	sleep 0.2
done
[ "$(title_len)" -lt "$before" ] || fail "no redraw after the resize"
width=$(tmux capture-pane -p -t "$tag-cli" | awk '{ if (length($0) > m) m = length($0) } END { print m }')
[ "$width" -le 100 ] || fail "lines of $width columns on a 100-column screen"
screen_has "$tag-cli" "^  tcp +lo -> \\[::1\\]:$port +up " ||
	fail "no link line after the resize"
ok "a resize to 100x30 redraws within the new width"

tmux send-keys -t "$tag-cli" q
[ "$(exit_status "$tmp/cli.exit")" = 0 ] || fail "client after q: $(cat "$tmp/cli.exit" 2>/dev/null)"
ok "q quits agg-client with exit status 0"
screen_has "$tag-srv" '^agg-server +0 sessions' ||
	fail "server still shows the session"
screen_has "$tag-srv" '^[0-9:]{8} [0-9a-f]{8}: session closed: .*client shutting down$' ||
	fail "server: no session-closed event"
tmux capture-pane -p -t "$tag-srv" | grep -q 'TRANS.*LINK' &&
	fail "server: stale lines of the closed session"
ok "agg-server's monitor drops the session the client closed, with its event"
tmux send-keys -t "$tag-srv" q
[ "$(exit_status "$tmp/srv.exit")" = 0 ] || fail "server after q: $(cat "$tmp/srv.exit" 2>/dev/null)"
ok "q quits agg-server with exit status 0"

echo "$passed passed, 0 failed"
