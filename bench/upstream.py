"""A minimal HTTP/1.1 server standing in for the bank API in measure 2.

It answers every request at once with the same small JSON body and checks nothing, so
that the measure's other process does as little as possible beside the one measured.

    python -m bench.upstream PORT
"""

from __future__ import annotations

import asyncio
import sys

BODY = b'{"accounts":[]}'
ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")  # GET requests only: no body follows
            writer.write(ANSWER)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        writer.close()


async def serve(port: int) -> None:
    server = await asyncio.start_server(answer, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
