#!/usr/bin/env python3
"""A sign-in storm: C clients that keep submitting WRONG passwords to the portal for S
seconds (each fetches the form for its CSRF token and portal cookie, then posts). Prints
the attempts made and their statuses. Loopback only, bounded in time.

    signin_storm.py PORT CLIENTS SECONDS
"""
import asyncio
import re
import ssl
import sys
import time
from urllib.parse import urlencode


# One TLS context for every connection: making one loads the system's CA store, about 40 ms
# of this client's CPU, which made a context per request the storm's own bottleneck (about
# 8 attempts a second from 100 clients, and core 1 taken from wrk) instead of the portal.
TLS = ssl.create_default_context()
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE


async def request(port, raw):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=TLS, server_hostname="auth.localhost")
    writer.write(raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


async def client(port, deadline, counts):
    host = f"auth.localhost:{port}"
    while time.monotonic() < deadline:
        page = await request(port, f"GET /login HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        cookie = re.search(rb"Set-Cookie: (__Host-gatehouse-portal=[^;]+)", page, re.I)
        csrf = re.search(rb'name="csrf" value="([^"]+)"', page)
        if not cookie or not csrf:
            counts["form_failed"] = counts.get("form_failed", 0) + 1
            continue
        body = urlencode({"csrf": csrf.group(1).decode(), "username": "alice", "password": "wrong-password"}).encode()
        head = (f"POST /login HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie.group(1).decode()}\r\n"
                f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n").encode()
        answer = await request(port, head + body)
        status = answer.split(b" ", 2)[1].decode() if answer else "none"
        counts[status] = counts.get(status, 0) + 1


async def main():
    port, clients, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    deadline = time.monotonic() + seconds
    counts = {}
    await asyncio.wait_for(asyncio.gather(*(client(port, deadline, counts) for _ in range(clients))), seconds + 30)
    print("storm attempts by status:", counts)


asyncio.run(main())
