#!/usr/bin/env bash
# A local client that hangs up while its stream is still opening: agg-client
# resets the stream at once, so agg-server stops dialling ("... while
# connecting" in its log) instead of dialling on until its own timeout.
# The destination never answers: a listener whose accept queue is full
# drops every further SYN. A -L client that only half-closes (sends, then
# shuts down its sending side) still gets its answer.
# Usage: open_hangup.sh BUILDDIR
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_setup hangup "$1"

echo "hangup secret" > "$tmp/secret"
server_port=$(free_port)
socks_port=$(free_port)
fwd_port=$(free_port)
half_port=$(free_port)
reply_port=$(free_port)

# The destination that never answers, and one that reads to EOF and then
# answers "reply:" + what it read (once per connection).
cat > "$tmp/dest.py" <<'PY'
import socket, sys, threading, time
full = socket.socket()
full.bind(("127.0.0.1", 0))
full.listen(0)
filler = socket.create_connection(full.getsockname())
reply = socket.socket()
reply.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
reply.bind(("127.0.0.1", int(sys.argv[2])))
reply.listen(8)
with open(sys.argv[1], "w") as f:
    f.write("%d\n" % full.getsockname()[1])
def answer(c):
    c.settimeout(30)
    data = b""
    while True:
        b = c.recv(4096)
        if not b:
            break
        data += b
    c.sendall(b"reply:" + data)
    c.close()
for _ in range(16):
    c, _ = reply.accept()
    threading.Thread(target=answer, args=(c,), daemon=True).start()
time.sleep(60)
PY
python3 "$tmp/dest.py" "$tmp/blackhole_port" "$reply_port" &
pids+=($!)
wait_for test -s "$tmp/blackhole_port" || fail "destination did not start"
hole=$(cat "$tmp/blackhole_port")

"$server_bin" -vv -l "tcp://127.0.0.1:$server_port" -k "$tmp/secret" \
	--no-monitor >"$tmp/server.log" 2>&1 &
pids+=($!)
"$client_bin" -vv -k "$tmp/secret" --no-monitor -D "127.0.0.1:$socks_port" \
	-L "127.0.0.1:$fwd_port:127.0.0.1:$hole" \
	-L "127.0.0.1:$half_port:127.0.0.1:$reply_port" \
	"tcp://127.0.0.1:$server_port" >"$tmp/client.log" 2>&1 &
pids+=($!)
wait_for grep -q "handshake -> up" "$tmp/server.log" || {
	cat "$tmp/client.log" "$tmp/server.log" >&2; fail "no link up"; }

# Waits (bounded) until the server either gave up the dial because the
# client went away or timed it out; prints which.
dial_end() {
	local i
	for i in $(seq 1 200); do
		if grep -q "→ 127.0.0.1:$hole: .*while connecting" \
			"$tmp/server.log"; then
			echo "reset while connecting"
			return 0
		fi
		if grep -q "→ 127.0.0.1:$hole: timed out" "$tmp/server.log"; then
			echo "dial timed out"
			return 0
		fi
		sleep 0.1
	done
	echo "nothing"
}

# SOCKS5: greeting, CONNECT to the silent destination, then hang up.
python3 - "$socks_port" "$hole" <<'PY'
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 10)
s.sendall(b"\x05\x01\x00")
assert s.recv(2) == b"\x05\x00"
s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") +
          struct.pack(">H", int(sys.argv[2])))
s.close()
PY
wait_for grep -q "→ 127.0.0.1:$hole: trying" "$tmp/server.log" || {
	cat "$tmp/server.log" >&2; fail "the server never dialled"; }
got=$(dial_end)
[ "$got" = "reset while connecting" ] || {
	tail -20 "$tmp/server.log" >&2; fail "SOCKS hang-up: $got"; }
ok "SOCKS client hangs up while opening: the server stops dialling"

# -L: a client that resets its connection while the stream opens.
lines=$(wc -l < "$tmp/server.log")
python3 - "$fwd_port" <<'PY'
import socket, struct, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 10)
time.sleep(0.5)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
PY
two_resets() {
	[ "$(grep -c "→ 127.0.0.1:$hole: .*while connecting" \
		"$tmp/server.log")" -eq 2 ]
}
wait_for two_resets || {
	tail -n +"$lines" "$tmp/server.log" >&2
	fail "-L reset while opening not seen by the server"; }
ok "-L client resets while opening: the server stops dialling"

# -L: sending then half-closing while the stream opens is not a hang-up.
got=$(python3 - "$half_port" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 10)
s.settimeout(20)
s.sendall(b"ping")
s.shutdown(socket.SHUT_WR)
data = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    data += b
print(data.decode())
PY
)
[ "$got" = "reply:ping" ] || fail "-L half-close: got '$got'"
ok "-L client half-closes at once: bytes and EOF still delivered"

echo "$passed passed"
