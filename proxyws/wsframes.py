"""
Websocket frame boundaries in a byte stream, for relaying frames as they are.

The relay (L{proxyws.wsrelay}) forwards the bytes of each frame unchanged: a
client's masked frames are valid frames for the backend, and a backend's
unmasked frames are valid for the client (compressed ones too: both ends
negotiated the same parameters).  L{FrameScanner} reads only the frame
headers (2 to 14 bytes a frame) to know where frames end, so that the proxy
can put a frame of its own (a ping, a close) between two frames; it checks
each header against RFC 6455 5.2-5.5, so that no frame a peer may not send
passes; and it keeps the payload of control frames (at most 125 bytes) to
learn close codes and pongs.

Nothing here does I/O.
"""

import struct

from .errors import BadFrame, MessageTooBig

# RFC 6455 section 5.2 opcodes.
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

_LENGTH16 = struct.Struct("!H")
_LENGTH64 = struct.Struct("!Q")


def unmask(key, payload):
    """
    Apply (or remove) a websocket masking key.

    @param key: the 4-byte key.
    @param payload: the payload.
    @return: the payload with the key applied.
    """
    if not payload:
        return payload
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(payload), "big"
    )


def controlFrame(opcode, payload, maskKey=None):
    """
    The bytes of one control frame.

    @param opcode: L{CLOSE}, L{PING} or L{PONG}.
    @param payload: at most 125 bytes.
    @param maskKey: a 4-byte key for frames sent to a server, or L{None}.
    """
    header = bytes((0x80 | opcode, (0x80 if maskKey else 0) | len(payload)))
    if maskKey:
        return header + maskKey + unmask(maskKey, payload)
    return header + payload


def closePayload(code, reason=b""):
    """
    The payload of a close frame.

    @param code: the status code, or L{None} for none.
    """
    if code is None:
        return b""
    return _LENGTH16.pack(code) + reason[:123]


def parseClose(payload):
    """
    The status code and reason of a close frame's payload.

    @return: C{(code, reason)}; C{(None, b"")} when there is no code.
    """
    if len(payload) < 2:
        return None, b""
    return _LENGTH16.unpack(payload[:2])[0], payload[2:]


class FrameScanner:
    """
    Follows frame boundaries in one direction of a websocket connection.

    @ivar messageBytes: payload bytes of the data message in progress.
    @ivar controls: control frames completed by the last L{feed}, as
        C{(opcode, unmasked payload)}.
    @ivar closeEnd: where the close frame completed by the last L{feed}
        ends in the bytes fed, or -1; nothing after a close frame is read.
    @ivar messages: data messages begun so far (for the metrics).
    @ivar payload: payload bytes of data frames so far (compressed as they
        travel, when compressed).
    """

    __slots__ = (
        "_remaining",
        "_head",
        "_control",
        "_opcode",
        "_key",
        "_fragmented",
        "_reserved",
        "_mask",
        "_messageStart",
        "controls",
        "closeEnd",
        "limit",
        "messages",
        "payload",
    )

    def __init__(self, limit=0, compressed=False, masked=None):
        """
        @param limit: the largest message payload allowed, 0 for no limit.
        @param compressed: whether permessage-deflate was negotiated, so
            that the first frame of a data message may carry RSV1.
        @param masked: L{True} for frames from a client (which must be
            masked), L{False} for frames from a server (which must not be,
            RFC 6455 5.1), L{None} to take either.
        """
        self.limit = limit
        self._remaining = 0
        self._head = b""
        self._control = None
        self._opcode = 0
        self._key = None
        self._fragmented = False
        self._reserved = 0x30 if compressed else 0x70
        self._mask = None if masked is None else (0x80 if masked else 0)
        # The payload bytes of data frames so far are counted once, for
        # the metrics and the size limit alike: a message's own size is
        # what came since it began.
        self._messageStart = 0
        self.controls = ()
        self.closeEnd = -1
        self.messages = self.payload = 0

    @property
    def messageBytes(self):
        """
        Payload bytes of the data message in progress.
        """
        return self.payload - self._messageStart

    def atBoundary(self):
        """
        Whether the bytes fed so far end exactly at the end of a frame.
        """
        return not self._remaining and not self._head

    def feed(self, data):
        """
        Read the frame headers in C{data}, the next bytes of the stream.

        @return: the offset in C{data} of the last frame boundary in it
            (0 when the stream was at a boundary before it and none other
            was reached), or -1 when none.
        @raise MessageTooBig: after reading all of C{data}, when a data
            frame in it took its message over the limit.
        @raise BadFrame: for a frame header no websocket peer may send.
        """
        self.controls = ()
        self.closeEnd = -1
        tooBig = None
        boundary = 0 if self.atBoundary() else -1
        position = 0
        size = len(data)
        while position < size:
            if self._remaining:
                take = min(self._remaining, size - position)
                if self._control is not None:
                    self._control.append(data[position : position + take])
                self._remaining -= take
                position += take
                if not self._remaining:
                    boundary = position
                    if self._endFrame(position):
                        break
                continue
            clean = not self._head
            try:
                used = self._header(data, position)
            except BadFrame as e:
                e.offset = position if clean else -1
                raise
            if used < 0:
                break
            if self.limit and self.payload - self._messageStart > self.limit and tooBig is None:
                # Cut before this frame, when all of its header is here; read
                # on, so that the stream stays followed.
                tooBig = position if clean else -1
            position += used
            if not self._remaining and not self._head:
                boundary = position
                if self._endFrame(position):
                    break
        if tooBig is not None:
            raise MessageTooBig(tooBig)
        return boundary

    def _header(self, data, position):
        """
        Parse a frame header starting at C{position}, perhaps after bytes
        kept from earlier.

        @return: the bytes of C{data} it used, or -1 when it needs more.
        """
        head = self._head + data[position : position + 14] if self._head else data[position : position + 14]
        if len(head) < 2:
            self._head = head
            return -1
        first, second = head[0], head[1]
        length = second & 0x7F
        size = 2
        if length == 126:
            size = 4
        elif length == 127:
            size = 10
        masked = second & 0x80
        if masked:
            size += 4
        if self._mask is not None and masked != self._mask:
            raise BadFrame("a masked frame from a server" if masked else "an unmasked frame from a client")
        if len(head) < size:
            self._head = head
            return -1
        if length == 126:
            length = _LENGTH16.unpack_from(head, 2)[0]
        elif length == 127:
            length = _LENGTH64.unpack_from(head, 2)[0]
        used = size - len(self._head)
        self._head = b""
        opcode = first & 0x0F
        self._opcode = opcode
        fin = first & 0x80
        if opcode & 0x8:
            if length > 125 or not fin or first & 0x70 or opcode > PONG:
                raise BadFrame("invalid control frame")
            self._control = []
            self._key = head[size - 4 : size] if masked else None
        else:
            self._control = None
            if opcode == CONTINUATION:
                if not self._fragmented or first & 0x70:
                    raise BadFrame("invalid continuation frame")
            elif opcode > BINARY or self._fragmented or first & self._reserved:
                raise BadFrame("invalid data frame")
            else:
                self._messageStart = self.payload
                self.messages += 1
            self._fragmented = not fin
            self.payload += length
        self._remaining = length
        return used

    def _endFrame(self, position):
        """
        A frame ended at C{position}: keep a control frame's payload.

        @return: whether it was a close frame (nothing after it counts).
        """
        if self._control is None:
            return False
        payload = b"".join(self._control)
        if self._key is not None:
            payload = unmask(self._key, payload)
        if not self.controls:
            self.controls = []
        self.controls.append((self._opcode, payload))
        self._control = None
        if self._opcode == CLOSE:
            self.closeEnd = position
            return True
        return False
