"""
A minimal, fast websocket echo backend for the benchmark.

Usage: C{python wsecho.py PORT}.  It listens on 127.0.0.1:PORT, accepts an
upgrade on any path, and echoes every message as one frame of the same
opcode once it is complete (a fragmented message is assembled first, as
application servers do), answers pings, and echoes a close frame then closes
the connection.  It is
written on raw asyncio protocols (uvloop when installed) so that the backend
costs as little CPU as possible; frames are not validated.
"""

import asyncio
import resource
import sys

from wsproto import CLOSE, PING, PONG, acceptKey, applyMask, frameHeader

# Requests larger than this without a blank line are refused.
_MAX_HEAD = 65536


class EchoProtocol(asyncio.Protocol):
    """
    One websocket connection: the handshake, then frames echoed.

    States: handshake (C{self._open} false), open, closed.
    """

    def connection_made(self, transport):
        """
        Start reading the upgrade request.
        """
        self._transport = transport
        self._buffer = bytearray()
        self._open = False
        self._opcode = None
        self._fragments = []

    def data_received(self, data):
        """
        Answer the handshake, then echo every complete frame.
        """
        self._buffer += data
        if not self._open and not self._handshake():
            return
        out = []
        offset = self._echo(out)
        if offset:
            del self._buffer[:offset]
        if out:
            self._transport.write(b"".join(out))
        if self._open is None:
            self._transport.close()

    def _handshake(self):
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > _MAX_HEAD:
                self._transport.close()
            return False
        head = bytes(self._buffer[:end])
        del self._buffer[: end + 4]
        key = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        if key is None:
            self._transport.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            self._transport.close()
            return False
        self._transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + acceptKey(key) + b"\r\n\r\n"
        )
        self._open = True
        return True

    def _echo(self, out):
        """
        Echo the complete frames in the buffer into C{out}.

        @return: how many bytes of the buffer were used.
        """
        buf = self._buffer
        pos, end = 0, len(buf)
        while self._open and end - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            length = second & 0x7F
            start = pos + 2
            if length == 126:
                start = pos + 4
            elif length == 127:
                start = pos + 10
            masked = second & 0x80
            if end < start + (4 if masked else 0):
                break
            if length == 126:
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
            elif length == 127:
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
            mask = None
            if masked:
                mask = bytes(buf[start : start + 4])
                start += 4
            if end < start + length:
                break
            payload = buf[start : start + length]
            if mask is not None:
                payload = applyMask(payload, mask)
            pos = start + length
            opcode = first & 0x0F
            if opcode == CLOSE:
                out.append(frameHeader(0x80 | CLOSE, length) + payload)
                self._open = None
            elif opcode == PING:
                out.append(frameHeader(0x80 | PONG, length) + payload)
            elif opcode != PONG:
                self._message(first, opcode, payload, out)
        return pos

    def _message(self, first, opcode, payload, out):
        """
        A data frame: echo the message it completes, if it does.
        """
        if opcode:
            self._opcode = opcode
        if not first & 0x80:
            self._fragments.append(bytes(payload))
            return
        if self._fragments:
            self._fragments.append(bytes(payload))
            payload = b"".join(self._fragments)
            self._fragments = []
        out.append(frameHeader(0x80 | self._opcode, len(payload)) + payload)

    def connection_lost(self, exc):
        """
        Nothing to clean up.
        """


def _raiseFileLimit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def main(port):
    """
    Serve until killed.
    """
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoProtocol, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def run(coroutine):
    """
    Run C{coroutine} on uvloop when it is installed, else on asyncio's loop.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


if __name__ == "__main__":
    _raiseFileLimit()
    run(main(int(sys.argv[1])))
