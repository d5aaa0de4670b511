"""A small HTTP/1.1 keep-alive load generator, used when wrk is not installed.

    python bench/loadgen.py URL --seconds 3 --connections 16 [-H "Name: value"]...

Prints wrk's summary lines ("N requests in T s", "Requests/sec:") so ``common.throughput``
reads either. Runs in its own process so it never shares a core's event loop with a server.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from urllib.parse import urlsplit


async def connection(
    host: str, port: int, request: bytes, deadline: float, counts: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            counts[0] += 1
            if not 200 <= status < 400:
                counts[1] += 1
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("-H", dest="headers", action="append", default=[])
    args = parser.parse_args()
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    lines = [f"GET {path} HTTP/1.1", f"Host: {url.netloc}", *args.headers]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    counts = [0, 0]
    start = time.perf_counter()
    deadline = start + args.seconds
    await asyncio.gather(
        *(connection(host, port, request, deadline, counts) for _ in range(args.connections))
    )
    elapsed = time.perf_counter() - start
    print(f"  {counts[0]} requests in {elapsed:.2f}s")
    if counts[1]:
        print(f"  Non-2xx or 3xx responses: {counts[1]}")
    print(f"Requests/sec: {counts[0] / elapsed:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
