#!/usr/bin/env python3
"""Open N keep-alive TLS connections to a server on 127.0.0.1, send one request on each
(so each is a real, used HTTP/1.1 connection), keep them all open and idle, and print the
server's RSS before and after. Loopback only; bounded by N and a timeout.

    idle_conns.py PORT PID N [HOST_HEADER] [COOKIE]
    HOLD_SECONDS=30 idle_conns.py …   # keep them open that long after printing (idle-heap.sh)
"""
import asyncio
import os
import ssl
import sys


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def group_rss_kib(pid):
    """RSS of the process and its children (nginx: master + workers)."""
    total = rss_kib(pid)
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            for child in f.read().split():
                total += rss_kib(int(child))
    except OSError:
        pass
    return total


async def one(port, host, cookie, ctx, held):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    req = f"GET / HTTP/1.1\r\nHost: {host}\r\n"
    if cookie:
        req += f"Cookie: {cookie}\r\n"
    writer.write((req + "\r\n").encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    held.append(writer)


async def main():
    port, pid, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    host = sys.argv[4] if len(sys.argv) > 4 else "127.0.0.1"
    cookie = sys.argv[5] if len(sys.argv) > 5 else ""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    before = group_rss_kib(pid)
    held = []
    for start in range(0, n, 500):
        await asyncio.wait_for(
            asyncio.gather(*(one(port, host, cookie, ctx, held) for _ in range(start, min(n, start + 500)))),
            timeout=60,
        )
    await asyncio.sleep(2)
    after = group_rss_kib(pid)
    print(f"connections={len(held)} rss_before_kib={before} rss_after_kib={after} "
          f"bytes_per_connection={(after - before) * 1024 // max(1, len(held))}", flush=True)
    await asyncio.sleep(float(os.environ.get("HOLD_SECONDS", "0")))
    for w in held:
        w.close()


asyncio.run(main())
