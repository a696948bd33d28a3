"""
Tests for L{proxyws.wsframes}: frame boundaries found from headers alone.
"""

import struct

from twisted.trial.unittest import SynchronousTestCase

from proxyws.errors import BadFrame, MessageTooBig

from proxyws.wsframes import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    FrameScanner,
    closePayload,
    controlFrame,
    parseClose,
    unmask,
)

KEY = b"\x01\x02\x03\x04"


def frame(opcode, payload, fin=True, key=None, rsv=0):
    """
    The bytes of one frame, masked with C{key} when given, with the
    reserved bits C{rsv}.
    """
    first = (0x80 if fin else 0) | rsv | opcode
    length = len(payload)
    mask = 0x80 if key else 0
    if length < 126:
        header = bytes((first, mask | length))
    elif length < 65536:
        header = bytes((first, mask | 126)) + struct.pack("!H", length)
    else:
        header = bytes((first, mask | 127)) + struct.pack("!Q", length)
    if key:
        return header + key + unmask(key, payload)
    return header + payload


class ScannerTests(SynchronousTestCase):
    """
    L{FrameScanner.feed} finds where frames end, however the bytes are cut.
    """

    def test_boundaryTable(self):
        """
        Each row: the frames fed at once -> the offset of the last boundary.
        """
        rows = [
            ([frame(TEXT, b"hi")], 4),
            ([frame(TEXT, b"hi"), frame(BINARY, b"")], 6),
            ([frame(BINARY, b"x" * 200)], 204),
            ([frame(BINARY, b"x" * 70000)], 70010),
            ([frame(TEXT, b"hi", key=KEY)], 8),
        ]
        for frames, expected in rows:
            scanner = FrameScanner()
            self.assertEqual(scanner.feed(b"".join(frames)), expected, frames)
            self.assertTrue(scanner.atBoundary())

    def test_byteByByte(self):
        """
        Fed one byte at a time, a stream of frames of every header size
        reaches a boundary exactly at the end of each frame.
        """
        frames = [
            frame(TEXT, b"a" * 5, key=KEY),
            frame(BINARY, b"b" * 300, fin=False),
            frame(CONTINUATION, b"c" * 70000),
            frame(PING, b"p", key=KEY),
        ]
        stream = b"".join(frames)
        ends = set()
        total = 0
        for f in frames:
            total += len(f)
            ends.add(total)
        scanner = FrameScanner()
        found = set()
        for i in range(len(stream)):
            if scanner.feed(stream[i : i + 1]) == 1:
                found.add(i + 1)
        self.assertEqual(found, ends)

    def test_midFrame(self):
        """
        A chunk that ends inside a frame reports the last boundary before it,
        and -1 when it holds none.
        """
        scanner = FrameScanner()
        data = frame(TEXT, b"one") + frame(BINARY, b"x" * 100)
        self.assertEqual(scanner.feed(data[:50]), 5)
        self.assertFalse(scanner.atBoundary())
        self.assertEqual(scanner.feed(data[50:60]), -1)
        self.assertEqual(scanner.feed(data[60:]), len(data) - 60)

    def test_controlFrames(self):
        """
        Control frames are reported with their unmasked payloads, up to a
        close frame: nothing after it is read, and C{closeEnd} says where
        it ends.
        """
        scanner = FrameScanner()
        head = (
            frame(PING, b"are you there", key=KEY)
            + frame(TEXT, b"data")
            + frame(CLOSE, closePayload(4000, b"bye"), key=KEY)
        )
        boundary = scanner.feed(head + frame(PONG, b"") + frame(TEXT, b"late"))
        self.assertEqual(
            scanner.controls,
            [(PING, b"are you there"), (CLOSE, b"\x0f\xa0bye")],
        )
        self.assertEqual((boundary, scanner.closeEnd), (len(head), len(head)))

    def test_messageBytes(self):
        """
        The payload of a fragmented message adds up across its frames and
        starts again with the next message; control frames do not count.
        """
        scanner = FrameScanner()
        scanner.feed(frame(TEXT, b"ab", fin=False) + frame(PING, b"x") + frame(CONTINUATION, b"cde"))
        self.assertEqual(scanner.messageBytes, 5)
        scanner.feed(frame(BINARY, b"z"))
        self.assertEqual(scanner.messageBytes, 1)

    def test_tooBig(self):
        """
        With a limit, the frame that takes a message over it raises
        L{MessageTooBig} with the offset of its header.
        """
        scanner = FrameScanner(limit=10)
        first = frame(BINARY, b"small")
        with self.assertRaises(MessageTooBig) as raised:
            scanner.feed(first + frame(BINARY, b"y" * 11))
        self.assertEqual(raised.exception.offset, len(first))

    def test_tooBigHeaderSplit(self):
        """
        When the header of the frame over the limit began in earlier bytes,
        the offset is -1.
        """
        scanner = FrameScanner(limit=10)
        data = frame(BINARY, b"y" * 300)
        scanner.feed(data[:1])
        with self.assertRaises(MessageTooBig) as raised:
            scanner.feed(data[1:])
        self.assertEqual(raised.exception.offset, -1)

    def test_invalidControlFrame(self):
        """
        A control frame longer than 125 bytes or fragmented is refused.
        """
        for data in [frame(PING, b"x" * 126), frame(PING, b"x", fin=False)]:
            self.assertRaises(ValueError, FrameScanner().feed, data)


class FrameTests(SynchronousTestCase):
    """
    Building and reading control frames.
    """

    def test_controlFrameRoundTrip(self):
        """
        A masked close frame built here scans back to its code and reason.
        """
        scanner = FrameScanner()
        scanner.feed(controlFrame(CLOSE, closePayload(1001, b"away"), KEY))
        opcode, payload = scanner.controls[0]
        self.assertEqual((opcode, parseClose(payload)), (CLOSE, (1001, b"away")))

    def test_closeWithoutCode(self):
        """
        An empty close payload has no code.
        """
        self.assertEqual(closePayload(None), b"")
        self.assertEqual(parseClose(b""), (None, b""))

    def test_unmaskIsItsOwnInverse(self):
        """
        Masking twice with one key gives the payload back.
        """
        payload = bytes(range(256)) * 3
        self.assertEqual(unmask(KEY, unmask(KEY, payload)), payload)
        self.assertEqual(unmask(KEY, b""), b"")


class TooBigThenCloseTests(SynchronousTestCase):
    """
    After a message over the limit the scanner still follows the stream.
    """

    def test_closeAfterTooBig(self):
        """
        The rest of a too-big frame is read as payload, and the close frame
        after it is seen.
        """
        scanner = FrameScanner(limit=10)
        data = frame(BINARY, b"y" * 300, key=KEY)
        with self.assertRaises(MessageTooBig):
            scanner.feed(data[:50])
        scanner.feed(data[50:])
        self.assertTrue(scanner.atBoundary())
        scanner.limit = 0
        scanner.feed(frame(CLOSE, closePayload(1000, b"ok"), key=KEY))
        self.assertEqual(scanner.controls, [(CLOSE, closePayload(1000, b"ok"))])


class FrameRuleTests(SynchronousTestCase):
    """
    L{FrameScanner} refuses frame headers no peer may send (RFC 6455
    5.2-5.5, RFC 7692 6).
    """

    def test_refused(self):
        """
        Each stream raises L{BadFrame}; with compression negotiated too,
        except where RSV1 marks the first frame of a compressed message.
        """
        rows = [
            frame(TEXT, b"x", rsv=0x40),
            frame(TEXT, b"x", rsv=0x20),
            frame(BINARY, b"x", rsv=0x10),
            frame(CONTINUATION, b"x"),
            frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"),
            frame(TEXT, b"a", fin=False) + frame(CONTINUATION, b"b", rsv=0x40),
            frame(0x3, b"x"),
            frame(0xB, b""),
            frame(PING, b"x", fin=False),
            frame(PING, b"x", rsv=0x40),
        ]
        for data in rows:
            self.assertRaises(BadFrame, FrameScanner().feed, data)
        for data in rows[1:]:
            self.assertRaises(BadFrame, FrameScanner(compressed=True).feed, data)

    def test_compressedFirstFrame(self):
        """
        With compression negotiated, RSV1 may mark the first frame of a
        message, fragmented or not.
        """
        stream = (
            frame(TEXT, b"x", rsv=0x40)
            + frame(BINARY, b"a", fin=False, rsv=0x40)
            + frame(CONTINUATION, b"b")
        )
        self.assertEqual(FrameScanner(compressed=True).feed(stream), len(stream))

    def test_masking(self):
        """
        Frames from a client must be masked and frames from a server must
        not be (RFC 6455 5.1); without a side, either passes.
        """
        masked, plain = frame(TEXT, b"x", key=KEY), frame(TEXT, b"x")
        self.assertEqual(FrameScanner(masked=True).feed(masked), len(masked))
        self.assertEqual(FrameScanner(masked=False).feed(plain), len(plain))
        self.assertRaises(BadFrame, FrameScanner(masked=True).feed, plain)
        self.assertRaises(BadFrame, FrameScanner(masked=False).feed, masked)
        self.assertEqual(FrameScanner().feed(masked + plain), len(masked + plain))
