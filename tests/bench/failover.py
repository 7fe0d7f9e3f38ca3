#!/usr/bin/env python3
"""failover.py: scenario 4 of tests/bench/links.sh (a link blackholed while
one stream runs).

  failover.py drive --lab LAB_SH --name NAME --links N --link K
      --fault-at S --restore-at S --seconds S --samples CSV --progress FILE
      -- FETCH_CMD...
    Runs inside the lab's client namespace: starts FETCH_CMD (a bench-flow
    fetch with -p FILE), samples rx/tx bytes of c1..cN every 100 ms into
    CSV, blackholes link K at --fault-at and restores it at --restore-at
    (seconds after the start), and prints the fetch's result line.
  failover.py analyze --samples CSV --progress FILE --remaining MBIT
      --link K --link-mbit MBIT --fault-at S --restore-at S
    Prints recover_s (from the fault until the goodput of every 300 ms
    window starting in the next second is >= 90 % of the remaining
    capacity) and back_s (from the
    restore until link K receives >= 10 % of its own rate in a 100 ms
    sample); -1 when it never happened.
  failover.py plot --out PNG LABEL=CSV... --fault-at S --restore-at S
    Per-link throughput (received by the client, Mbit/s) over time, one
    panel per system. Needs python3-matplotlib.
"""
import argparse
import subprocess
import sys
import time

SAMPLE_S = 0.1
WINDOW_S = 0.3
HOLD_S = 1.0


def read_counter(iface, which):
    with open("/sys/class/net/%s/statistics/%s_bytes" % (iface, which)) as f:
        return int(f.read())


def drive(a, cmd):
    ifaces = ["c%d" % i for i in range(1, a.links + 1)]
    out = open(a.samples, "w")
    out.write("t," + ",".join("%s_rx,%s_tx" % (i, i) for i in ifaces) + "\n")
    t0 = time.monotonic()
    fetch = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    faulted = restored = False
    faults = []
    end = t0 + a.seconds + 30
    n = 0
    while time.monotonic() < end:
        now = time.monotonic() - t0
        row = ["%.3f" % now]
        for i in ifaces:
            try:
                row += [str(read_counter(i, "rx")), str(read_counter(i, "tx"))]
            except OSError:
                row += ["0", "0"]
        out.write(",".join(row) + "\n")
        # The faults run beside the sampling, which must not pause.
        if not faulted and now >= a.fault_at:
            faults.append(subprocess.Popen(
                [a.lab, "fault", a.name, str(a.link), "blackhole"]))
            faulted = True
        if not restored and now >= a.restore_at:
            faults.append(subprocess.Popen(
                [a.lab, "fault", a.name, str(a.link), "restore"]))
            restored = True
        if fetch.poll() is not None and now > a.seconds:
            break
        # The next slot on the 100 ms grid that is still ahead.
        n = max(n + 1, int((time.monotonic() - t0) / SAMPLE_S) + 1)
        delay = t0 + n * SAMPLE_S - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    out.close()
    if fetch.poll() is None:
        fetch.kill()
    for f in faults:
        f.wait()
    if not restored:
        subprocess.run([a.lab, "fault", a.name, str(a.link), "restore"])
    print(fetch.communicate()[0].strip())
    return 0


def load_samples(path):
    rows = []
    with open(path) as f:
        head = f.readline().strip().split(",")
        for line in f:
            v = line.strip().split(",")
            rows.append([float(v[0])] + [int(x) for x in v[1:]])
    links = [h[:-3] for h in head[1:] if h.endswith("_rx")]
    return links, rows


def rates(rows, k):
    """Mbit/s received on link index k between consecutive samples."""
    out = []
    for p, q in zip(rows, rows[1:]):
        dt = q[0] - p[0]
        out.append((q[0], (q[1 + 2 * k] - p[1 + 2 * k]) * 8 / dt / 1e6
                    if dt > 0 else 0))
    return out


def analyze(a):
    prog = []
    with open(a.progress) as f:
        for line in f:
            ms, b = line.split()
            prog.append((int(ms) / 1000.0, int(b)))
    # Goodput of the WINDOW_S starting at each sample after the fault.
    win = []
    for i, (t, b) in enumerate(prog):
        if t < a.fault_at or t >= a.restore_at:
            continue
        for t2, b2 in prog[i:]:
            if t2 - t >= WINDOW_S - 1e-6:
                win.append((t, (b2 - b) * 8 / (t2 - t) / 1e6))
                break
    recover = -1.0
    for i, (t, _) in enumerate(win):
        if all(r >= 0.9 * a.remaining for t2, r in win[i:]
               if t2 <= t + HOLD_S):
            recover = t - a.fault_at
            break
    links, rows = load_samples(a.samples)
    back = -1.0
    for t, r in rates(rows, a.link - 1):
        if t > a.restore_at and r >= 0.1 * a.link_mbit:
            back = t - a.restore_at
            break
    print("recover_s=%.1f back_s=%.1f" % (recover, back))
    return 0


def plot(a, pairs):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(pairs), 1, figsize=(8, 2.2 * len(pairs)),
                             sharex=True, squeeze=False)
    for ax, (label, path) in zip(axes[:, 0], pairs):
        links, rows = load_samples(path)
        total = None
        for k, name in enumerate(links):
            r = rates(rows, k)
            ax.plot([t for t, _ in r], [v for _, v in r], lw=0.9, label=name)
            total = [v for _, v in r] if total is None else \
                [x + v for x, (_, v) in zip(total, r)]
        ax.plot([t for t, _ in rates(rows, 0)], total, lw=0.9, color="black",
                label="sum")
        ax.axvline(a.fault_at, color="red", ls="--", lw=0.8)
        ax.axvline(a.restore_at, color="green", ls="--", lw=0.8)
        ax.set_title(label, fontsize=9)
        ax.set_ylabel("Mbit/s", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper right", ncol=len(links) + 1)
        ax.set_xlim(0, a.seconds)
    axes[-1, 0].set_xlabel("seconds (red: blackhole, green: restore)",
                           fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out, dpi=60)
    return 0


def main():
    argv = sys.argv[1:]
    cmd = []
    if "--" in argv:
        cmd = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["drive", "analyze", "plot"])
    p.add_argument("--lab")
    p.add_argument("--name")
    p.add_argument("--links", type=int)
    p.add_argument("--link", type=int)
    p.add_argument("--link-mbit", type=float)
    p.add_argument("--remaining", type=float)
    p.add_argument("--fault-at", type=float, default=5)
    p.add_argument("--restore-at", type=float, default=15)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--samples")
    p.add_argument("--progress")
    p.add_argument("--out")
    p.add_argument("pairs", nargs="*")
    a = p.parse_intermixed_args(argv)
    if a.mode == "drive":
        return drive(a, cmd)
    if a.mode == "analyze":
        return analyze(a)
    return plot(a, [x.split("=", 1) for x in a.pairs])


if __name__ == "__main__":
    sys.exit(main())
