"""A Unix-socket relay, run by the tests as another user so that the engine sees that user's uid.

``python3 socket_relay.py LISTEN TARGET``: every connection to LISTEN is joined to a fresh
connection to TARGET made by this process. Standard library only: it runs under the system
Python as ``nobody``.
"""

import asyncio
import sys


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of input, then pass the end on (a half-close, as the engine does when it
    refuses a connection); a socket closed with input unread would reset the other side."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
    except ConnectionError:
        writer.close()


async def main(listen: str, target: str) -> None:
    async def join(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(target)
        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            writer.close()
            up_writer.close()

    server = await asyncio.start_unix_server(join, path=listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
