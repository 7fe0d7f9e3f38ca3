#!/usr/bin/env bash
# agg-client -W gives stdin and stdout back as it found them: the file
# descriptions are shared with the parent (ssh's ProxyCommand pipes), so
# O_NONBLOCK left set breaks the parent. Checked after a clean end (exit
# 0) and after a refused connect (exit 1), on pipes the test keeps open.
# Usage: stdpipe_flags.sh BUILDDIR
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_setup stdpipe "$1"

echo "stdpipe flags secret" > "$tmp/secret"
server_port=$(free_port)
hold_closed_port
"$server_bin" -l "tcp://127.0.0.1:$server_port" -k "$tmp/secret" \
	--no-monitor >"$tmp/server.log" 2>&1 &
pids+=($!)

# Runs agg-client -W with pipes as stdin and stdout whose other copies the
# test keeps; prints "exit STATUS, stdin blocking B, stdout blocking B,
# got BYTES". The destination, when PORT is 0, is a one-shot listener
# that reads to EOF and answers "reply:" + what it read. With "same" as
# the last argument stdin and stdout are one socket (one file description,
# as under inetd or a terminal) whose other end the test holds.
cat > "$tmp/run.py" <<'PY'
import os, socket, subprocess, sys, threading, time
client, secret, url, port, log = sys.argv[1:6]
same = len(sys.argv) > 6 and sys.argv[6] == "same"
port = int(port)
if port == 0:
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    lst.settimeout(30)
    port = lst.getsockname()[1]
    def serve():
        c, _ = lst.accept()
        c.settimeout(30)
        data = b""
        while True:
            b = c.recv(4096)
            if not b:
                break
            data += b
        c.sendall(b"reply:" + data)
        c.close()
    threading.Thread(target=serve, daemon=True).start()
if same:
    mine, theirs = socket.socketpair()
    r_in = w_out = theirs.fileno()
else:
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
# Waits (bounded) until the server takes links.
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), 1).close()
        break
    except OSError:
        time.sleep(0.1)
with open(log, "w") as err:
    p = subprocess.Popen([client, "-W", "127.0.0.1:%d" % port, "-k", secret,
                          "--no-monitor", url], stdin=r_in, stdout=w_out,
                         stderr=err)
    if same:
        mine.sendall(b"hello")
        mine.shutdown(socket.SHUT_WR)
    else:
        os.write(w_in, b"hello")
        os.close(w_in)
    status = p.wait(timeout=60)
if same:
    mine.setblocking(False)
    try:
        got = mine.recv(65536)
    except BlockingIOError:
        got = b""
else:
    os.set_blocking(r_out, False)
    try:
        got = os.read(r_out, 65536)
    except BlockingIOError:
        got = b""
print("exit %d, stdin blocking %s, stdout blocking %s, got %r" % (
    status, os.get_blocking(r_in), os.get_blocking(w_out), got))
PY

out=$(python3 "$tmp/run.py" "$client_bin" "$tmp/secret" \
	"tcp://127.0.0.1:$server_port" 0 "$tmp/client1.log")
[ "$out" = "exit 0, stdin blocking True, stdout blocking True, got b'reply:hello'" ] || {
	cat "$tmp/client1.log" >&2
	fail "after a clean end: $out"
}
ok "-W clean end: exit 0, bytes through, stdin and stdout blocking again"

out=$(python3 "$tmp/run.py" "$client_bin" "$tmp/secret" \
	"tcp://127.0.0.1:$server_port" "$closed_port" "$tmp/client2.log")
[ "$out" = "exit 1, stdin blocking True, stdout blocking True, got b''" ] || {
	cat "$tmp/client2.log" >&2
	fail "after a refused connect: $out"
}
grep -q "connect to 127.0.0.1:$closed_port failed: connection refused" \
	"$tmp/client2.log" || { cat "$tmp/client2.log" >&2; fail "message"; }
ok "-W refused connect: exit 1 with its message, stdin and stdout blocking again"

# fd 0 and 1 one file description: the flags saved for fd 1 must be
# those from before fd 0 was made non-blocking.
out=$(python3 "$tmp/run.py" "$client_bin" "$tmp/secret" \
	"tcp://127.0.0.1:$server_port" 0 "$tmp/client3.log" same)
[ "$out" = "exit 0, stdin blocking True, stdout blocking True, got b'reply:hello'" ] || {
	cat "$tmp/client3.log" >&2
	fail "stdin and stdout one socket: $out"
}
ok "-W on one socket as stdin and stdout: exit 0, bytes through, blocking again"

echo "$passed passed"
