#!/usr/bin/env bash
# Builds agg in the build directory given (default: build) with any extra
# meson options, runs the whole test suite, and prints each Check summary
# and a closing "N passed, N failed" line.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
if [ -d "$dir" ]; then
	meson setup --reconfigure "$dir" "$@" >/dev/null
else
	meson setup "$dir" "$@" >/dev/null
fi
ninja -C "$dir"
rc=0
meson test -C "$dir" --print-errorlogs --num-processes 2 || rc=$?
# meson is Python, so python3 is here: summarise its JSON log.
python3 - "$dir/meson-logs/testlog.json" <<'PY'
import json, sys
passed = failed = 0
for line in open(sys.argv[1]):
    t = json.loads(line)
    for out in t.get("stdout", "").splitlines():
        if out.startswith("100%:") or "Checks:" in out:
            print(f"{t['name']}: {out}")
    if t["result"] in ("OK", "SKIP", "EXPECTEDFAIL"):
        passed += 1
    else:
        failed += 1
print(f"{passed} passed, {failed} failed")
PY
exit $rc
