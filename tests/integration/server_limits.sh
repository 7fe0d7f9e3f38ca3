#!/usr/bin/env bash
# agg-server's limits, each reached for real with small settings, each with
# its logged reason, and the server serving others meanwhile and after:
# --max-connecting (dials to a destination that never answers: a listener
# whose accept queue is full), --max-buffered (an upload to a destination
# that never reads; the amount read from --dump), --max-handshaking (200
# silent connections to the link port; the oldest are closed and a new
# agg-client still gets in). Usage: server_limits.sh BUILDDIR
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_setup limits "$1"

echo "limits secret" > "$tmp/secret"
server_port=$(free_port)
socks_a=$(free_port)
socks_b=$(free_port)
socks_c=$(free_port)

"$server_bin" -vv -l "tcp://127.0.0.1:$server_port" -k "$tmp/secret" \
	--no-monitor --max-connecting 4 --max-buffered 1 \
	--max-handshaking 32 --dump "$tmp/dump.jsonl" \
	>"$tmp/server.log" 2>&1 &
pids+=($!)
for s in a b; do
	port_var=socks_$s
	"$client_bin" -k "$tmp/secret" --no-monitor \
		-D "127.0.0.1:${!port_var}" "tcp://127.0.0.1:$server_port" \
		>"$tmp/client_$s.log" 2>&1 &
	pids+=($!)
done

cat > "$tmp/limits.py" <<'PY'
import json, os, select, socket, struct, subprocess, sys, threading, time

(tmp, client_bin, server_port, socks_a, socks_b, socks_c) = sys.argv[1:7]
server_port, socks_a, socks_b, socks_c = (int(server_port), int(socks_a),
                                          int(socks_b), int(socks_c))
log = os.path.join(tmp, "server.log")
passed = 0

def ok(what):
    global passed
    passed += 1
    print("ok %d - %s" % (passed, what), flush=True)

def fail(what):
    sys.stderr.write("".join(l for l in open(log) if "handshak" not in l and "link from" not in l)[-3000:])
    sys.stderr.write("%d lines with the cap reason\n" % log_count("too many links handshaking"))
    print("not ok - " + what, flush=True)
    sys.exit(1)

def wait_until(cond, what, seconds=30):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    fail("waited in vain: " + what)

def log_count(text):
    return sum(1 for line in open(log) if text in line)

def listener(backlog=16, rcvbuf=None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind(("127.0.0.1", 0))
    s.listen(backlog)
    return s, s.getsockname()[1]

# Destinations: one that never answers (accept queue full), one that
# echoes, one that reads to EOF and answers, one that never reads.
hole, hole_port = listener(0)
filler = socket.create_connection(("127.0.0.1", hole_port))
echo, echo_port = listener()
reply, reply_port = listener()
mute, mute_port = listener(rcvbuf=4096)
muted = []

def serve(lst, handler):
    def loop():
        while True:
            c, _ = lst.accept()
            threading.Thread(target=handler, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()

def echo_handler(c):
    while True:
        b = c.recv(65536)
        if not b:
            break
        c.sendall(b)
    c.close()

def reply_handler(c):
    data = b""
    while True:
        b = c.recv(65536)
        if not b:
            break
        data += b
    c.sendall(b"reply:" + data)
    c.close()

serve(echo, echo_handler)
serve(reply, reply_handler)
serve(mute, muted.append)

def socks(port, dest_port):
    """SOCKS5 CONNECT to 127.0.0.1:dest_port; returns (socket, reply)."""
    s = socket.create_connection(("127.0.0.1", port), 10)
    s.settimeout(30)
    s.sendall(b"\x05\x01\x00")
    if s.recv(2) != b"\x05\x00":
        fail("SOCKS greeting")
    s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") +
              struct.pack(">H", dest_port))
    head = b""
    while len(head) < 10:
        b = s.recv(10 - len(head))
        if not b:
            break
        head += b
    return s, head[1] if len(head) >= 2 else -1

def ask_reply(port, text):
    """A stream to the answering destination: its reply, or the code."""
    s, code = socks(port, reply_port)
    if code != 0:
        s.close()
        return "refused %d" % code
    s.sendall(text)
    s.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    return data.decode()

def echo_works(s, text):
    s.sendall(text)
    got = b""
    while len(got) < len(text):
        b = s.recv(65536)
        if not b:
            break
        got += b
    return got == text

def reachable(port):
    try:
        return ask_reply(port, b"hi") == "reply:hi"
    except OSError:
        return False

wait_until(lambda: reachable(socks_a) and reachable(socks_b),
           "both clients carry streams")
# Client B's long stream, used while the limits are reached.
echo_b, code = socks(socks_b, echo_port)
if code != 0 or not echo_works(echo_b, b"before"):
    fail("echo stream through client B")

# --max-connecting 4.
opening = []
for i in range(4):
    s = socket.create_connection(("127.0.0.1", socks_a), 10)
    s.sendall(b"\x05\x01\x00")
    s.recv(2)
    s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") +
              struct.pack(">H", hole_port))
    opening.append(s)
trying = "→ 127.0.0.1:%d: trying" % hole_port
wait_until(lambda: log_count(trying) == 4, "four dials under way")
got = ask_reply(socks_b, b"x")
if got != "refused 1":
    fail("fifth stream while four connect: %s" % got)
if log_count("server busy: 4 streams connecting (limit 4)") != 1:
    fail("no 'server busy: 4 streams connecting (limit 4)' in the log")
ok("--max-connecting 4: the fifth stream is refused (SOCKS 1), "
   "logged 'server busy: 4 streams connecting (limit 4)'")
if not echo_works(echo_b, b"during connecting limit"):
    fail("client B's stream stopped")
ok("client B's open stream still carries data at the connecting limit")
for s in opening:
    s.close()
wait_until(lambda: log_count("→ 127.0.0.1:%d: " % hole_port) >= 8,
           "the four dials end")
if ask_reply(socks_b, b"after") != "reply:after":
    fail("a new stream once the dials ended")
ok("new streams are served again once the dials end")

# --max-buffered 1 (MiB).
up, code = socks(socks_a, mute_port)
if code != 0:
    fail("stream to the destination that never reads")
up.setblocking(False)
chunk = b"u" * 65536
sent = 0

def dump_buffered():
    best = 0
    try:
        lines = open(os.path.join(tmp, "dump.jsonl")).read().splitlines()
    except OSError:
        return 0
    for line in lines[-20:]:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        best = max(best, rec.get("buffered_bytes", 0))
    return best

end = time.monotonic() + 30
while dump_buffered() <= (1 << 20) and time.monotonic() < end and \
        sent < (256 << 20):
    if select.select([], [up], [], 0.1)[1]:
        try:
            sent += up.send(chunk)
        except BlockingIOError:
            pass
if dump_buffered() <= (1 << 20):
    fail("the server never held more than 1 MiB (sent %d)" % sent)
got = ask_reply(socks_b, b"x")
if got != "refused 1":
    fail("new stream with more than 1 MiB buffered: %s" % got)
if log_count("server busy: more than 1 MiB buffered") != 1:
    fail("no 'server busy: more than 1 MiB buffered' in the log")
ok("--max-buffered 1: with %d bytes held, a new stream is refused "
   "(SOCKS 1), logged 'server busy: more than 1 MiB buffered'"
   % dump_buffered())
if not echo_works(echo_b, b"during buffered limit"):
    fail("client B's stream stopped")
ok("client B's open stream still carries data at the buffered limit")
# The destination hangs up: the stream ends and its bytes are let go.
wait_until(lambda: len(muted) == 1, "the upload's destination connection")
muted[0].setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))
muted[0].close()
up.close()
wait_until(lambda: reachable(socks_b), "new streams after the upload ended")
ok("new streams are served again once the buffered bytes are gone")

# --max-handshaking 32: 200 silent connections to the link port.
silent = [socket.create_connection(("127.0.0.1", server_port), 10)
          for _ in range(200)]
ports = [s.getsockname()[1] for s in silent]
cap = "too many links handshaking (limit 32): closing the oldest, link "
wait_until(lambda: log_count(cap) >= 168, "168 silent links closed")
if log_count(cap) != 168:
    fail("%d silent links closed, not 168" % log_count(cap))
closed = sorted(int(line.split("link 127.0.0.1:")[1].split(":")[0])
                for line in open(log) if cap in line)
if closed != sorted(ports[:168]):
    fail("the closed links are not the 168 oldest")
ok("--max-handshaking 32: of 200 silent connections the 168 oldest are "
   "closed, each logged")
client_c = subprocess.Popen([client_bin, "-k", os.path.join(tmp, "secret"),
                             "--no-monitor", "-D", "127.0.0.1:%d" % socks_c,
                             "tcp://127.0.0.1:%d" % server_port],
                            stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(tmp, "client_c.log"), "w"))
try:
    wait_until(lambda: reachable(socks_c), "a new client among silent links")
finally:
    client_c.terminate()
    client_c.wait(10)
ok("a new agg-client gets in and carries a stream among the silent links")
if not echo_works(echo_b, b"at the end"):
    fail("client B's stream stopped")
ok("client B's stream outlived every limit")
for s in silent:
    s.close()
print("%d passed" % passed)
PY
python3 "$tmp/limits.py" "$tmp" "$client_bin" "$server_port" "$socks_a" \
	"$socks_b" "$socks_c"
