#!/usr/bin/env bash
# Benchmark, not a test: in the USB VM (see usb_vm.sh), 16 MiB downloads
# through SOCKS over one usb link alone (dummy_hcd, SuperSpeed) and then
# over one tcp link alone (loopback), three runs each, checked by SHA-256.
# Under TCG emulation both are far below real hardware; compare them with
# each other. Usage: bench.sh BUILDDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(bash "$here/usb_vm.sh" "$1" bench)
printf '%-6s %-4s %10s %8s %12s\n' link run bytes seconds 'Mbit/s'
echo "$out" | awk '$1 == "BENCH" {
	if ($4 == "corrupt") { printf "%-6s %-4s corrupt download\n", $2, $3; next }
	printf "%-6s %-4s %10d %8.2f %12.1f\n", $2, $3, $4, $5, $6 * 8 / 1e6
}'
