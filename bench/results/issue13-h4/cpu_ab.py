"""Alternating A/B of two Go test binaries by CPU time per op (user + sys of the child).

    python cpu_ab.py OLD.test NEW.test OUTPREFIX ROUNDS N BENCH...

Runs each BENCH (a full benchmark name, e.g. BenchmarkHotKey/fixed_window/3dim) N times
(-test.benchtime Nx) in each binary, alternating which goes first, ROUNDS times, and writes
benchstat-readable lines to OUTPREFIX.old / OUTPREFIX.new and the load average to
OUTPREFIX.load. CPU time rather than wall time: on a shared machine a process waiting for a
core accrues wall time, not CPU time (it still suffers cache and core sharing).
"""

import resource
import subprocess  # nosec B404 # runs the given test binaries
import sys


def cpu_ns_per_op(binary: str, bench: str, n: int) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(  # nosec B603 # argv of the given binary, no shell
        [binary, "-test.run", "XXX", "-test.bench", "^" + bench + "$", "-test.benchtime", f"{n}x", "-test.count", "1"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu / (n + 1) * 1e9  # the framework's b.N=1 probe run adds one op


def main() -> None:
    old, new, out, rounds, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    benches = sys.argv[6:]
    header = "goos: linux\ngoarch: amd64\npkg: github.com/rate-limiter-go/rate_limiter_go/core\n"
    with open(out + ".old", "w") as fo, open(out + ".new", "w") as fn, open(out + ".load", "w") as fl:
        fl.write("load before: " + open("/proc/loadavg").read())
        fo.write(header)
        fn.write(header)
        for r in range(rounds):
            for bench in benches:
                pairs = ((old, fo), (new, fn)) if r % 2 == 0 else ((new, fn), (old, fo))
                for binary, fh in pairs:
                    ns = cpu_ns_per_op(binary, bench, n)
                    fh.write(f"{bench}-2 \t{n}\t{ns:.1f} ns/op\n")
                    fh.flush()
        fl.write("load after: " + open("/proc/loadavg").read())


if __name__ == "__main__":
    main()
