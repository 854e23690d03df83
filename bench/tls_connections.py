#!/usr/bin/env python3
"""One TLS connection per request, with or without TLS session resumption.

usage: tls_connections.py PORT HOST SECONDS PROCESSES full|resumed [COOKIE]

Each process loops for SECONDS: connect to 127.0.0.1:PORT (SNI = HOST), send one
GET / with "Connection: close" (and the cookie, if given), read the answer to the end,
close. "resumed" offers the session ticket of the previous connection, as a browser coming
back would; "full" never does. Prints connections/s, the share actually resumed, and the
non-2xx count. Loopback only, bounded by SECONDS.
"""
import multiprocessing
import socket
import ssl
import sys
import time


def client(port, host, seconds, mode, cookie, out):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    request = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
    if cookie:
        request += f"Cookie: {cookie}\r\n"
    request = (request + "\r\n").encode()
    session = None
    done = resumed = bad = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with ctx.wrap_socket(raw, server_hostname=host, session=session) as tls:
                tls.sendall(request)
                answer = b""
                while chunk := tls.recv(65536):
                    answer += chunk
                done += 1
                resumed += tls.session_reused
                bad += not answer.startswith(b"HTTP/1.1 2")
                if mode == "resumed":
                    session = tls.session
    out.put((done, resumed, bad))


def main():
    port, host, seconds, procs, mode = sys.argv[1:6]
    cookie = sys.argv[6] if len(sys.argv) > 6 else ""
    port, seconds, procs = int(port), float(seconds), int(procs)
    out = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=client, args=(port, host, seconds, mode, cookie, out))
               for _ in range(procs)]
    start = time.monotonic()
    for w in workers:
        w.start()
    results = [out.get() for _ in workers]
    for w in workers:
        w.join()
    elapsed = time.monotonic() - start
    done = sum(r[0] for r in results)
    resumed = sum(r[1] for r in results)
    bad = sum(r[2] for r in results)
    print(f"connections={done} conn/s={done / elapsed:.0f} resumed={100 * resumed / max(done, 1):.0f}% non2xx={bad}")


if __name__ == "__main__":
    main()
