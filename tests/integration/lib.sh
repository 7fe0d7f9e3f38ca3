# lib.sh: helpers the end-to-end scripts share (sourced, not run).

# A free loopback TCP port, below the kernel's ephemeral range
# (32768-60999): one from bind(0) could be taken meanwhile as the source
# port of an outgoing connection.
free_port() {
	python3 -c 'import random, socket; print(next(p for p in random.sample(range(20000, 32768), 2000) if socket.socket().connect_ex(("127.0.0.1", p)) != 0))'
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
