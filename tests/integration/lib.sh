# lib.sh: helpers the end-to-end scripts share (sourced, not run).

fail() { echo "FAIL: $*" >&2; exit 1; }
passed=0
ok() { passed=$((passed + 1)); echo "ok $passed - $*"; }

# e2e_setup NAME BUILDDIR: the start of a script that runs the built
# programs: sets build, server_bin, client_bin, tmp (a directory removed at
# exit) and pids (background jobs killed at exit).
e2e_setup() {
	build=$(cd "$2" && pwd)
	server_bin=$build/proxy-server/agg-server
	client_bin=$build/proxy-client/agg-client
	tmp=$(mktemp -d "/tmp/agg-$1.XXXXXX")
	pids=()
	trap e2e_cleanup EXIT INT TERM
}

# Kills the jobs in pids and removes tmp.
e2e_cleanup() {
	local p
	# Background subshells inherit the trap: only the script cleans up.
	[ "$BASHPID" = "$$" ] || return 0
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}

# A free loopback TCP port, below the kernel's ephemeral range
# (32768-60999): one from bind(0) could be taken meanwhile as the source
# port of an outgoing connection.
free_port() {
	python3 -c '
import random, socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()
print(next(p for p in random.sample(range(20000, 32768), 2000) if free(p)))'
}

# Waits (at most 15 s) until a command succeeds.
wait_for() {
	local i
	for i in $(seq 1 150); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	return 1
}

# Sets closed_port to a loopback port that stays closed for the whole
# test: a background process (its pid goes into pids) holds a socket bound
# to it that never listens, so a connection is refused and no test running
# alongside can start a server there.
hold_closed_port() {
	local f i
	f=$(mktemp)
	python3 -c '
import random, signal, socket, sys
s = socket.socket()
for p in random.sample(range(20000, 32768), 2000):
    try:
        s.bind(("127.0.0.1", p))
        break
    except OSError:
        pass
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
signal.pause()' "$f" &
	pids+=($!)
	for i in $(seq 1 100); do
		[ -s "$f" ] && break
		sleep 0.05
	done
	closed_port=$(cat "$f")
	rm -f "$f"
}

# Serves DIR over HTTP on 127.0.0.1:PORT until killed (run it in the
# background). Python's http.server listens with a backlog of 5: a burst of
# connections on a loaded machine overflows it, and a dropped SYN waits for
# its retransmission (1, 3, 7 s), beyond a dialer's timeout.
serve_http() {
	exec python3 - "$1" "$2" <<'PY'
import functools, http.server, sys
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024
handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                            directory=sys.argv[2])
Server(("127.0.0.1", int(sys.argv[1])), handler).serve_forever()
PY
}
