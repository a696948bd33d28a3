"""
The little of RFC 6455 that the benchmark's own websocket peers need.

The echo backend (L{wsecho}) and the load clients (L{clients}) speak raw
websocket over asyncio protocols so that they cost as little CPU as
possible: the machine has two cores and these peers share one of them, while
the proxy under test has the other.  Nothing here is used by proxyws.
"""

import base64
import hashlib
import os

try:
    # The C masking of the websockets package, when it is installed.
    from websockets.speedups import apply_mask as _applyMaskC
except ImportError:  # pragma: no cover - depends on the venv
    _applyMaskC = None

# RFC 6455 opcodes.
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def applyMask(payload, mask):
    """
    XOR C{payload} with the 4-byte C{mask} repeated.

    @return: the (un)masked bytes.
    """
    if not payload or mask == b"\0\0\0\0":
        return bytes(payload)
    if _applyMaskC is not None:
        return _applyMaskC(bytes(payload), mask)
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def acceptKey(key):
    """
    @param key: the client's C{Sec-WebSocket-Key} value.
    @return: the matching C{Sec-WebSocket-Accept} value.
    """
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def frameHeader(first, length, mask=None):
    """
    The header of a frame.

    @param first: the first byte (FIN bit and opcode).
    @param length: the payload length.
    @param mask: a 4-byte masking key, or L{None} for an unmasked frame.
    """
    bit = 0x80 if mask is not None else 0
    if length < 126:
        head = bytes([first, bit | length])
    elif length < 65536:
        head = bytes([first, bit | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([first, bit | 127]) + length.to_bytes(8, "big")
    return head + (mask or b"")


def clientFrame(opcode, payload, fin=True):
    """
    A whole masked frame as a client sends it, with a random masking key.
    """
    mask = os.urandom(4)
    first = (0x80 if fin else 0) | opcode
    return frameHeader(first, len(payload), mask) + applyMask(payload, mask)


def closePayload(code=1000, reason=b""):
    """
    @return: the payload of a close frame.
    """
    return code.to_bytes(2, "big") + reason


def handshakeRequest(host, port, path):
    """
    @return: a websocket upgrade request as bytes.
    """
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET %s HTTP/1.1\r\n"
        b"Host: %s:%d\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"\r\n" % (path.encode(), host.encode(), port, key)
    )


class FrameReader:
    """
    An incremental reader of frames that reports messages and control frames
    without keeping data payloads: the clients only count.

    @ivar messageLength: payload bytes of the message being read so far.
    """

    def __init__(self):
        self._pending = b""
        self._remaining = 0
        self._opcode = None
        self._fin = False
        self._control = None
        self.messageLength = 0

    def feed(self, data):
        """
        Read C{data}.

        @return: a list of C{(opcode, length)}: one for each message
            completed (opcode L{TEXT} or L{BINARY}, length of its payload)
            and each control frame (its opcode, its payload bytes).
        """
        if self._pending:
            data = self._pending + data
            self._pending = b""
        events = []
        pos, end = 0, len(data)
        while pos < end:
            if self._remaining:
                take = min(self._remaining, end - pos)
                if self._control is not None:
                    self._control += data[pos : pos + take]
                else:
                    self.messageLength += take
                self._remaining -= take
                pos += take
                if not self._remaining:
                    self._frameDone(events)
                continue
            header = _parseHeader(data, pos, end)
            if header is None:
                self._pending = data[pos:]
                break
            pos, first, length = header
            self._frameStart(first, length, events)
        return events

    def _frameStart(self, first, length, events):
        opcode = first & 0x0F
        if opcode >= CLOSE:
            self._control = b""
            self._controlOpcode = opcode
        else:
            self._control = None
            if opcode != CONTINUATION:
                self._opcode = opcode
                self.messageLength = 0
            self._fin = bool(first & 0x80)
        self._remaining = length
        if not length:
            self._frameDone(events)

    def _frameDone(self, events):
        if self._control is not None:
            events.append((self._controlOpcode, self._control))
            self._control = None
        elif self._fin:
            events.append((self._opcode, self.messageLength))
            self.messageLength = 0


def _parseHeader(data, pos, end):
    """
    @return: C{(payloadStart, firstByte, length)}, or L{None} when the header
        is not complete.  A mask, if any, is skipped (the clients never get
        masked frames from a conforming server).
    """
    if end - pos < 2:
        return None
    first, second = data[pos], data[pos + 1]
    length = second & 0x7F
    size = 2
    if length == 126:
        size = 4
    elif length == 127:
        size = 10
    if second & 0x80:
        size += 4
    if end - pos < size:
        return None
    if length == 126:
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
    elif length == 127:
        length = int.from_bytes(data[pos + 2 : pos + 10], "big")
    return pos + size, first, length
