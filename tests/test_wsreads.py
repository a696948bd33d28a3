"""
Tests for L{proxyws.wsreads}: how much the websocket relay reads at a time.

The rule is a pure function, checked as a table; the legs' transports are
plain objects; the last tests relay real messages over loopback sockets
and read the sizes the relay's legs ended with.
"""

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase

from proxyws import wsrelay
from proxyws.wsframes import FrameScanner
from proxyws.wsreads import READ_LIMIT, UNSET, readSizeAfter, resize, startReading
from proxyws.wsrelay import Leg

from .test_loopback_ws import RelayTestCase

KiB = 1024

# (read size, bytes the read returned, ws_buffer_size) -> next read size.
READ_SIZES = [
    # A full read doubles the size, up to READ_LIMIT.
    (64 * KiB, 64 * KiB, 64 * KiB, 128 * KiB),
    (128 * KiB, 128 * KiB, 64 * KiB, 256 * KiB),
    (512 * KiB, 512 * KiB, 64 * KiB, READ_LIMIT),
    (READ_LIMIT, READ_LIMIT, 64 * KiB, READ_LIMIT),
    (768 * KiB, 768 * KiB, 64 * KiB, READ_LIMIT),
    # ws_buffer_size above READ_LIMIT: reads keep that size.
    (4 * READ_LIMIT, 4 * READ_LIMIT, 4 * READ_LIMIT, 4 * READ_LIMIT),
    # Not full, not shorter than ws_buffer_size: unchanged.
    (256 * KiB, 200 * KiB, 64 * KiB, 256 * KiB),
    (READ_LIMIT, 64 * KiB, 64 * KiB, READ_LIMIT),
    (64 * KiB, 40 * KiB, 64 * KiB, 64 * KiB),
    # Shorter than ws_buffer_size: halved, down to ws_buffer_size.
    (READ_LIMIT, 14, 64 * KiB, 512 * KiB),
    (256 * KiB, 64 * KiB - 1, 64 * KiB, 128 * KiB),
    (128 * KiB, 32, 64 * KiB, 64 * KiB),
    (64 * KiB, 32, 64 * KiB, 64 * KiB),
    (96 * KiB, 32, 64 * KiB, 64 * KiB),
    (8 * KiB, 1, 8 * KiB, 8 * KiB),
]


class TCPTransport:
    """
    Stands for Twisted's TCP transport: it has a C{bufferSize}.
    """

    bufferSize = 65536


class TLSTransport:
    """
    Stands for Twisted's TLS protocol over TCP: no C{bufferSize}, a
    C{transport} below it.
    """

    def __init__(self):
        self.transport = TCPTransport()


class ReadSizeTests(SynchronousTestCase):
    """
    L{readSizeAfter}, L{startReading} and L{resize}.
    """

    def test_readSizeAfter(self):
        """
        Each row: the read size after a read of that many bytes.
        """
        got = [
            (current, read, base, readSizeAfter(current, read, base))
            for current, read, base, _ in READ_SIZES
        ]
        self.assertEqual(got, READ_SIZES)

    def test_startReading(self):
        """
        The TCP transport of a leg, or the one below its TLS transport,
        takes the size and is the leg's reader; a transport with none below
        it, or a leg whose reads are not to grow (a message passage reads
        them), leaves the leg's read size L{UNSET}, which no read reaches.
        """
        tcp, tls, other, fixed = TCPTransport(), TLSTransport(), object(), TCPTransport()
        legs = [Leg("client", transport, FrameScanner()) for transport in (tcp, tls, other, fixed)]
        for leg in legs[:3]:
            startReading(leg, 8192)
        startReading(legs[3], 8192, growing=False)
        self.assertEqual(
            [(leg.reader, leg.readSize) for leg in legs],
            [(tcp, 8192), (tls.transport, 8192), (None, UNSET), (None, UNSET)],
        )
        self.assertEqual(
            (tcp.bufferSize, tls.transport.bufferSize, fixed.bufferSize), (8192, 8192, 8192)
        )

    def test_resize(self):
        """
        L{resize} sets the leg's read size and its reader's C{bufferSize}
        together, and whether it is above the route's size.
        """
        leg = Leg("backend", TCPTransport(), FrameScanner())
        startReading(leg, 64 * KiB)
        seen = []
        for got in (64 * KiB, 128 * KiB, 100 * KiB, 10, 10):
            resize(leg, got, 64 * KiB)
            seen.append((leg.readSize, leg.reader.bufferSize, leg.grown))
        self.assertEqual(
            seen,
            [
                (128 * KiB, 128 * KiB, True),
                (256 * KiB, 256 * KiB, True),
                (256 * KiB, 256 * KiB, True),
                (128 * KiB, 128 * KiB, True),
                (64 * KiB, 64 * KiB, False),
            ],
        )


class RelayReadTests(RelayTestCase):
    """
    Over loopback sockets: a large message grows the reads of the leg it
    comes from, and small messages bring them back to C{ws_buffer_size}.
    """

    @inlineCallbacks
    def test_largeThenSmall(self):
        """
        A 4 MiB message from the client comes in full reads: the client
        leg's reads grow (the backend's too, as the echo comes back), within
        L{READ_LIMIT}; after small messages both are at 65536 again.  The
        messages arrive whole.
        """
        sizes = {"client": set(), "backend": set()}

        def recording(leg, got, base):
            resize(leg, got, base)
            sizes[leg.side].add(leg.reader.bufferSize)

        self.patch(wsrelay, "resize", recording)
        client = yield self.connect()
        big = bytes(range(256)) * (16 * KiB)
        client.sendMessage(big, isBinary=True)
        echoed = yield client.nextMessage()
        self.assertEqual(echoed, (big, True))
        largest = {side: max(seen, default=0) for side, seen in sizes.items()}
        self.assertEqual(
            {side: 65536 < size <= READ_LIMIT for side, size in largest.items()},
            {"client": True, "backend": True},
            largest,
        )
        [relay] = self.service.sites[0]._relays
        legs = (relay.client, relay.backend)
        for i in range(6):
            client.sendMessage(b"small %d" % i, isBinary=True)
            echoed = yield client.nextMessage()
            self.assertEqual(echoed, (b"small %d" % i, True))
        self.assertEqual(
            [(leg.readSize, leg.reader.bufferSize, leg.grown) for leg in legs],
            [(65536, 65536, False), (65536, 65536, False)],
        )
        yield self.closeClient(client)
