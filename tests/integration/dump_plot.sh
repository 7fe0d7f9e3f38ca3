#!/usr/bin/env bash
# --dump on both programs and agg-plot: a 32 MiB download over 3 loopback
# links with one link cut mid-way (ss -K); every dump line parses as JSON
# with the documented fields, the cut shows in the client's dump, and
# agg-plot turns each dump into a PNG. Usage: dump_plot.sh BUILDDIR
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
build=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
server_bin=$build/proxy-server/agg-server
client_bin=$build/proxy-client/agg-client
plot=$src/proxy-client/agg-plot
tmp=$(mktemp -d /tmp/agg-dump.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[ -n "${KEEP:-}" ] && cp "$tmp"/*.png "$tmp"/*.jsonl "$KEEP"/; rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

mkdir -p "$tmp/www"
head -c $((32 * 1024 * 1024)) /dev/urandom > "$tmp/www/big"
echo "dump test secret" > "$tmp/secret"
http_port=$(free_port)
server_port=$(free_port)
socks_port=$(free_port)

python3 -m http.server "$http_port" --bind 127.0.0.1 \
	--directory "$tmp/www" >"$tmp/http.log" 2>&1 &
pids+=($!)
"$server_bin" -l "tcp://[::]:$server_port" -k "$tmp/secret" --no-monitor \
	--dump "$tmp/server.jsonl" >"$tmp/server.log" 2>&1 &
server_pid=$!
pids+=($server_pid)
"$client_bin" -D "127.0.0.1:$socks_port" -k "$tmp/secret" --no-monitor \
	--dump "$tmp/client.jsonl" "tcp://127.0.0.1:$server_port" \
	"tcp://127.0.0.2:$server_port" "tcp://[::1]:$server_port" \
	>"$tmp/client.log" 2>&1 &
client_pid=$!
pids+=($client_pid)
wait_for curl -sf -o /dev/null --socks5-hostname "127.0.0.1:$socks_port" \
	"http://127.0.0.1:$http_port/big" || {
	cat "$tmp/client.log" "$tmp/server.log" >&2
	fail "no stream through agg-client"
}

# A rate-limited download, with the 127.0.0.2 link cut in its middle.
curl -sf --limit-rate 16M --socks5-hostname "127.0.0.1:$socks_port" \
	"http://127.0.0.1:$http_port/big" -o "$tmp/out" &
curl_pid=$!
sleep 1
ss -K dst 127.0.0.2 dport = ":$server_port" >/dev/null 2>&1 ||
	fail "ss -K cannot cut the link"
wait $curl_pid || fail "download failed"
cmp -s "$tmp/out" "$tmp/www/big" || fail "download differs"
ok "32 MiB download intact across a cut link"
# Whether a dump shows the 127.0.0.2 link up, then gone, then up again.
cat > "$tmp/cut_shown" <<PY
#!/usr/bin/python3
import json, sys
name = "127.0.0.2:$server_port"
seen = []
for line in open(sys.argv[1]):
    if line.endswith("\n"):
        seen.append(any(l["name"].endswith(name) and l["state"] == "up"
                        for l in json.loads(line)["links"]))
first = seen.index(True)
gone = seen.index(False, first)
seen.index(True, gone)
PY
chmod +x "$tmp/cut_shown"
for i in $(seq 1 100); do
	"$tmp/cut_shown" "$tmp/client.jsonl" 2>/dev/null && break
	sleep 0.1
done
kill -TERM "$client_pid"
wait "$client_pid" || fail "agg-client exit status $?"
kill -TERM "$server_pid"
wait "$server_pid" || fail "agg-server exit status $?"
ok "both programs exit 0 on SIGTERM with a dump open"

# Every line is a JSON object with the documented fields.
check_dump() {
	/usr/bin/python3 - "$1" "$2" <<'PY'
import json, sys
path, program = sys.argv[1], sys.argv[2]
session_keys = {"t", "time", "program", "session", "closed", "links_total",
    "links_up", "streams", "tx_payload", "rx_payload", "tx_bps", "rx_bps",
    "unacked_bytes", "buffered_bytes", "resent_frames", "duplicate_frames",
    "links"}
link_keys = {"id", "name", "state", "reason", "state_for_s", "tx_bytes",
    "rx_bytes", "tx_payload", "rx_payload", "tx_bps", "rx_bps",
    "delivery_bps", "srtt_us", "rttvar_us", "rtt_min_us", "inflight_bytes",
    "cap_bytes", "queued_bytes", "resent_frames"}
n = 0
states = set()
rx = 0
for lineno, line in enumerate(open(path), 1):
    rec = json.loads(line)
    missing = session_keys - rec.keys()
    assert not missing, "%s:%d: missing %s" % (path, lineno, missing)
    assert rec["program"] == program, rec["program"]
    assert len(rec["session"]) == 32, rec["session"]
    for link in rec["links"]:
        missing = link_keys - link.keys()
        assert not missing, "%s:%d: missing %s" % (path, lineno, missing)
        states.add(link["state"])
    rx = max(rx, rec["rx_payload"], rec["tx_payload"])
    n += 1
assert n >= 10, "only %d records" % n
assert rx >= 32 << 20, "payload %d" % rx
print(n, "records,", "states:", " ".join(sorted(states)))
PY
}
out=$(check_dump "$tmp/client.jsonl" agg-client) || fail "client dump: $out"
ok "client dump: $out"
out=$(check_dump "$tmp/server.jsonl" agg-server) || fail "server dump: $out"
ok "server dump: $out"

# The cut link left the client's session: a record without it, later one
# with it again (the link set re-dials).
"$tmp/cut_shown" "$tmp/client.jsonl" ||
	fail "the cut of the 127.0.0.2 link does not show in the client dump"
ok "the cut and the return of the 127.0.0.2 link show in the dump"

for side in client server; do
	"$plot" -o "$tmp/$side.png" "$tmp/$side.jsonl" >"$tmp/plot.out" 2>&1 ||
		fail "agg-plot $side: $(cat "$tmp/plot.out")"
	sig=$(head -c 8 "$tmp/$side.png" | od -An -tx1 | tr -d ' \n')
	[ "$sig" = 89504e470d0a1a0a ] || fail "$side.png is not a PNG ($sig)"
	[ "$(stat -c %s "$tmp/$side.png")" -gt 1000 ] || fail "$side.png small"
	ok "agg-plot draws the $side dump ($(stat -c %s "$tmp/$side.png") bytes)"
done

printf '{"t": 1}\n' > "$tmp/bad.jsonl"
set +e
"$plot" "$tmp/bad.jsonl" 2>"$tmp/plot.err"
status=$?
set -e
[ $status = 1 ] && grep -q "bad.jsonl:1: not an agg dump record" \
	"$tmp/plot.err" || fail "bad dump: $status $(cat "$tmp/plot.err")"
ok "agg-plot names the bad line of a broken dump"

echo "$passed passed, 0 failed"
