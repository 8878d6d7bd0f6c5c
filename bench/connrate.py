#!/usr/bin/env python3
"""bench/connrate.py HOST PORT SECONDS WORKERS: short TCP connections per second to HOST:PORT.

Each of WORKERS threads connects, sends one HTTP/1.0 request, reads the answer to its end
(the server closes) and starts again, for SECONDS. Prints the completed connections per
second over all threads, and the failed ones, as `rate=N failed=N`.
"""
import socket
import sys
import threading
import time

host, port, seconds, workers = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
done = [0] * workers
failed = [0] * workers
deadline = time.monotonic() + seconds


def worker(i):
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                while s.recv(4096):
                    pass
            done[i] += 1
        except OSError:
            failed[i] += 1


start = time.monotonic()
threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"rate={sum(done) / (time.monotonic() - start):.1f} failed={sum(failed)}")
