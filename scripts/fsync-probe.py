#!/usr/bin/python3
"""The disk's own sync latency, without ringmx: write 4,300-byte records at a fixed rate, each
followed by fdatasync, and print the latency percentiles of write + fdatasync.

    scripts/fsync-probe.py RATE COUNT FILE MODE

MODE: append (the file grows, as a spool segment does), zero (the file is zero-filled first and
overwritten in place: no size or extent change, so fdatasync needs no journal commit), falloc
(posix_fallocate first: unwritten extents). FILE is created and removed. Used for RESULTS.md
"Problems found" 1; run it pinned, e.g. taskset -c 1 scripts/fsync-probe.py 1000 4000
/var/tmp/probe.dat append.
"""
import os
import sys
import time


def main():
    if len(sys.argv) != 5 or sys.argv[4] not in ("append", "zero", "falloc"):
        sys.exit(__doc__)
    rate, n, path, mode = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    rec = b"x" * 4300
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if mode == "zero":
            chunk = b"\0" * (1 << 20)
            for _ in range((n * len(rec) >> 20) + 2):
                os.write(fd, chunk)
            os.fsync(fd)
        elif mode == "falloc":
            os.posix_fallocate(fd, 0, n * len(rec) + (1 << 20))
            os.fsync(fd)
        lat, off, start = [], 0, time.perf_counter()
        for i in range(n):
            due = start + i / rate
            while time.perf_counter() < due:  # spin: a sleep's wake-up would be measured too
                pass
            t = time.perf_counter()
            os.pwrite(fd, rec, off)
            os.fdatasync(fd)
            lat.append((time.perf_counter() - t) * 1e6)
            off += len(rec)
    finally:
        os.close(fd)
        os.unlink(path)
    lat.sort()
    q = [lat[min(len(lat) - 1, int(len(lat) * p))] for p in (0.5, 0.9, 0.99, 0.999)]
    print("%s, %g/s, %d records: p50 %.0f p90 %.0f p99 %.0f p99.9 %.0f max %.0f us"
          % (mode, rate, n, q[0], q[1], q[2], q[3], lat[-1]))


if __name__ == "__main__":
    main()
