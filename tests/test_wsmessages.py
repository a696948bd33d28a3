"""
Tests for L{proxyws.wsmessages}: websocket filters on whole messages,
driven without sockets (the harness of L{tests.test_wsproxy}).

Compressed and fragmented messages are written and read by Autobahn's
protocols and by the C{websockets} library's own permessage-deflate codec,
both directions, with and without context takeover, so that the proxy's
inflating and deflating is checked against two independent
implementations.
"""

import os
import struct
import tracemalloc
import zlib

from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
    PerMessageDeflateResponseAccept,
)
from twisted.internet.protocol import Protocol
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode
from zope.interface import implementer

from proxyws import wsmessages
from proxyws.interfaces import IWebSocketFilter
from proxyws.plugins import Close

from .plugintools import Passing, Rewriter, WaitingMessages, factoryOf, withPlugins
from .test_wsproxy import FRONT, RawPeer, RelayTestCase, backendFactory, clientFactory
from .wsbackends import switchingProtocols, upgradeRequest

# Sent by one side, with the Rewriter filter -> received by the other:
# text upper-cased, "keep" and binary passed, "drop" dropped.
REWRITES = [
    (b"hello", False, b"HELLO"),
    (b"keep", False, b"keep"),
    (b"drop", False, None),
    (b"\x00\xffbin", True, b"\x00\xffbin"),
    (b"later", False, b"LATER"),
    ("\u00e9t\u00e9".encode("utf-8"), False, "\u00c9T\u00c9".encode("utf-8")),
    (b"", False, b""),
]

# permessage-deflate settings: (what they show, the client's offer, the
# backend's acceptance), as Autobahn's options.
COMPRESSION = [
    ("context takeover both ways", {}, {}),
    (
        "no context takeover either way",
        dict(accept_no_context_takeover=True, request_no_context_takeover=True),
        dict(request_no_context_takeover=True, no_context_takeover=True),
    ),
    (
        "the client without context takeover",
        dict(accept_no_context_takeover=True),
        dict(request_no_context_takeover=True),
    ),
    (
        "window bits 9 (client) and 10 (backend)",
        dict(accept_max_window_bits=True, request_max_window_bits=10),
        dict(request_max_window_bits=9, window_bits=10),
    ),
]

# The same for the websockets library: (the client's offer, the backend's
# answer, client no context takeover, server no context takeover, client
# bits, server bits).
WEBSOCKETS = [
    (b"permessage-deflate; client_max_window_bits", b"permessage-deflate", False, False, 15, 15),
    (
        b"permessage-deflate; client_no_context_takeover; server_no_context_takeover",
        b"permessage-deflate; client_no_context_takeover; server_no_context_takeover",
        True, True, 15, 15,
    ),
    (
        b"permessage-deflate; client_max_window_bits=9; server_max_window_bits=11",
        b"permessage-deflate; client_max_window_bits=9; server_max_window_bits=11",
        False, False, 9, 11,
    ),
    (
        b"permessage-deflate; server_no_context_takeover",
        b"permessage-deflate; server_no_context_takeover",
        False, True, 15, 15,
    ),
]

# Text that compresses well and repeats across messages, so that a context
# kept between messages is used.
LONG = b"the same words again and again " * 40


def readFrames(buffer):
    """
    Split C{buffer} into C{websockets} L{Frame}s (unmasked).

    @return: C{(frames, rest)}.
    """
    frames = []
    while len(buffer) >= 2:
        first, second = buffer[0], buffer[1]
        length, position = second & 0x7F, 2
        if length == 126:
            length, position = struct.unpack("!H", buffer[2:4])[0], 4
        elif length == 127:
            length, position = struct.unpack("!Q", buffer[2:10])[0], 10
        key = None
        if second & 0x80:
            key, position = buffer[position : position + 4], position + 4
        if len(buffer) < position + length:
            break
        payload = buffer[position : position + length]
        if key is not None:
            payload = wsmessages.unmask(key, payload)
        frames.append(Frame(Opcode(first & 0x0F), payload, bool(first & 0x80), bool(first & 0x40)))
        buffer = buffer[position + length :]
    return frames, buffer


class WebsocketsEnd:
    """
    One end of a websocket in memory, with the C{websockets} library's
    permessage-deflate doing the compressing and the inflating.

    @ivar messages: C{(opcode, payload)} of each whole message received.
    @ivar closes: the payloads of the close frames received.
    """

    def __init__(self, transport, extension, masked):
        self.transport = transport
        self.extension = extension
        self.masked = masked
        self.messages = []
        self.closes = []
        self._buffer = b""
        self._parts = None

    def send(self, payload, opcode=Opcode.TEXT, pieces=1):
        """
        Send one message, compressed, in C{pieces} frames.
        """
        size = -(-len(payload) // pieces) if payload else 0
        chunks = [payload[i : i + size] for i in range(0, len(payload), size)] if size else [b""]
        for n, chunk in enumerate(chunks):
            frame = Frame(opcode if n == 0 else Opcode.CONT, chunk, n == len(chunks) - 1)
            self.transport.write(frame.serialize(mask=self.masked, extensions=[self.extension]))

    def received(self, data):
        """
        Read frames, inflating with the library's decoder.
        """
        frames, self._buffer = readFrames(self._buffer + data)
        for frame in frames:
            if frame.opcode == Opcode.CLOSE:
                self.closes.append(bytes(frame.data))
                continue
            frame = self.extension.decode(frame)
            if frame.opcode != Opcode.CONT:
                self._opcode, self._parts = frame.opcode, []
            self._parts.append(bytes(frame.data))
            if frame.fin:
                self.messages.append((self._opcode, b"".join(self._parts)))


class AnsweringPeer(Protocol):
    """
    A raw backend: answers the upgrade with C{answer} fields, then hands
    what it receives to C{receiver}.
    """

    def __init__(self, answer=b""):
        self.answer = answer
        self.receiver = None
        self.request = None

    def dataReceived(self, data):
        """
        Answer the upgrade, then pass bytes on.
        """
        if self.request is None:
            self.request = data
            self.transport.write(switchingProtocols(data, self.answer))
        elif self.receiver is not None:
            self.receiver(data)


class MessageTestCase(RelayTestCase):
    """
    A proxy whose route has websocket filters.
    """

    def route(self, *providers, extra=""):
        """
        @return: the route lines naming C{providers} as its plugins.
        """
        withPlugins(self, **{"f%d" % n: factoryOf(p) for n, p in enumerate(providers)})
        names = ", ".join('{ name = "f%d" }' % n for n in range(len(providers)))
        return "plugins = [%s]\n%s" % (names, extra)

    def openCompressed(self, route, offer, accept):
        """
        Open a websocket between two Autobahn peers that negotiate
        permessage-deflate with C{offer} and C{accept} options.

        @return: C{(client, backend)}.
        """
        self.buildProxy(route)
        factory = clientFactory(self.reactor)
        factory.setProtocolOptions(
            perMessageCompressionOffers=[PerMessageDeflateOffer(**offer)],
            perMessageCompressionAccept=PerMessageDeflateResponseAccept,
        )
        client = factory.buildProtocol(FRONT)
        self.clientConnection = self.connectClient(client)
        self.pump()
        factory = backendFactory(self.reactor)
        factory.setProtocolOptions(
            perMessageCompressionAccept=lambda offers: PerMessageDeflateOfferAccept(offers[0], **accept)
        )
        backend = factory.buildProtocol(FRONT)
        self.backendConnection = self.acceptBackend(backend)
        self.pump()
        self.assertTrue(client.opened and backend.opened)
        self.assertIsNotNone(client._perMessageCompress)
        return client, backend

    def openRaw(self, route, offer=None, answer=b""):
        """
        Open a websocket between two raw peers.

        @param offer: the client's C{Sec-WebSocket-Extensions}, if any.
        @param answer: the backend's 101 fields (header lines).
        @return: C{(client peer, backend peer)}; the client peer's
            C{received} starts after the 101.
        """
        self.buildProxy(route)
        headers = [(b"Sec-WebSocket-Extensions", offer)] if offer else []
        client = RawPeer(upgradeRequest(b"/chat", b"127.0.0.1:8080", headers))
        self.clientConnection = self.connectClient(client)
        self.pump()
        backend = AnsweringPeer(answer)
        self.backendConnection = self.acceptBackend(backend)
        self.pump()
        head, _, rest = client.received.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
        client.received = rest
        return client, backend

    def openWebsockets(self, route, offer, answer, clientTakeover, serverTakeover, clientBits, serverBits):
        """
        Open a websocket whose two ends use the C{websockets} library's
        permessage-deflate.

        @return: C{(client end, backend end)}, L{WebsocketsEnd}s.
        """
        client, backend = self.openRaw(route, offer, b"Sec-WebSocket-Extensions: " + answer + b"\r\n")
        clientEnd = WebsocketsEnd(
            self.clientConnection.clientIO,
            PerMessageDeflate(serverTakeover, clientTakeover, serverBits, clientBits),
            masked=True,
        )
        backendEnd = WebsocketsEnd(
            self.backendConnection.serverIO,
            PerMessageDeflate(clientTakeover, serverTakeover, clientBits, serverBits),
            masked=False,
        )
        client.dataReceived = clientEnd.received
        backend.receiver = backendEnd.received
        return clientEnd, backendEnd


class RewriteTests(MessageTestCase):
    """
    A filter passes, replaces, drops and closes, both directions.
    """

    def expected(self, binary=None):
        """
        @return: what the other side gets of L{REWRITES}, as Autobahn
            reports messages.
        """
        return [(isBinary, out) for _, isBinary, out in REWRITES if out is not None]

    def test_bothDirections(self):
        """
        Each message of L{REWRITES}, sent by either side, reaches the other
        as the filter made it, in order.
        """
        rewriter = Rewriter()
        client, backend = self.openWebSocket(self.route(rewriter))
        for payload, isBinary, _ in REWRITES:
            client.sendMessage(payload, isBinary)
            backend.sendMessage(payload, isBinary)
        self.pump()
        self.assertEqual(client.messages, self.expected())
        self.assertEqual(backend.messages, self.expected())

    def test_chain(self):
        """
        Two filters: the second sees what the first made of the message.
        """
        first, second = Rewriter(), Passing()
        client, backend = self.openWebSocket(self.route(first, second))
        client.sendMessage(b"abc")
        client.sendMessage(b"drop")
        self.pump()
        self.assertEqual(backend.messages, [(False, b"ABC")])
        self.assertEqual([m.payload for m in second.messages], [b"ABC"])

    def test_close(self):
        """
        A filter's L{Close} closes both legs with its code and reason; the
        filters' C{closed} is told them.
        """
        rewriter = Rewriter()
        client, backend = self.openWebSocket(self.route(rewriter))
        client.sendMessage(b"close")
        self.pump()
        self.assertEqual(client.closes, [(True, 4001, "closed by the filter")])
        self.assertEqual(backend.closes, [(True, 4001, "closed by the filter")])
        self.assertEqual(backend.messages, [])
        self.assertEqual(rewriter.calls[-1], ("closed", 4001, "closed by the filter"))

    def test_openedAndClosed(self):
        """
        C{opened} sees the upgrade request and the backend's subprotocol;
        C{closed} the first close's code and reason.
        """
        seen = []

        @implementer(IWebSocketFilter)
        class Watcher(Passing):
            def opened(self, connection):
                request = connection.request
                seen.append((request.uri, request.clientAddress, connection.subprotocol,
                             len(connection.id), connection.route.index))

            def closed(self, connection, code, reason):
                seen.append((code, reason))

        client, backend = self.openWebSocket(self.route(Watcher()))
        client.sendClose(1000, "bye")
        self.pump()
        self.assertEqual(seen, [(b"/chat", "10.0.0.1", None, 32, 0), (1000, "bye")])

    def test_vanishedIs1006(self):
        """
        A websocket whose connections end without a close frame is closed
        with 1006 for the filters.
        """
        rewriter = Rewriter()
        client, backend = self.openWebSocket(self.route(rewriter))
        from twisted.internet.error import ConnectionLost

        self.clientConnection.lose(ConnectionLost())
        self.pump()
        self.advance(10)
        self.assertEqual(rewriter.calls[-1][:2], ("closed", 1006))

    def test_openedCloses(self):
        """
        An C{opened} answering a L{Close} closes both legs at once; no
        message passes.
        """

        @implementer(IWebSocketFilter)
        class Refuser(Passing):
            def opened(self, connection):
                return Close(1008, "not you")

        client, backend = self.openWebSocket(self.route(Refuser()))
        self.pump()
        self.assertEqual(client.closes, [(True, 1008, "not you")])
        self.assertEqual(backend.closes, [(True, 1008, "not you")])
        self.assertEqual(backend.messages, [])


class FailureTests(MessageTestCase):
    """
    A filter that fails closes that websocket with 1011, logged once; the
    relay of other websockets goes on.
    """

    def test_raises(self):
        """
        A C{message} that raises: 1011 both ways, the error logged once.
        """

        @implementer(IWebSocketFilter)
        class Broken(Passing):
            def message(self, connection, message):
                raise RuntimeError("broken filter")

        client, backend = self.openWebSocket(self.route(Broken()))
        client.sendMessage(b"x")
        self.pump()
        close = (True, 1011, "proxyws: websocket filter failed")
        self.assertEqual((client.closes, backend.closes), ([close], [close]))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_openedRaises(self):
        """
        An C{opened} that raises: 1011 both ways.
        """

        @implementer(IWebSocketFilter)
        class Broken(Passing):
            def opened(self, connection):
                raise RuntimeError("broken filter")

        client, backend = self.openWebSocket(self.route(Broken()))
        self.pump()
        self.assertEqual(client.closes, [(True, 1011, "proxyws: websocket filter failed")])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_wrongAnswer(self):
        """
        A C{message} answering a message of the other direction fails.
        """

        @implementer(IWebSocketFilter)
        class Wrong(Passing):
            def message(self, connection, message):
                return wsmessages.Message("out" if message.direction == "in" else "in", False, b"x")

        client, backend = self.openWebSocket(self.route(Wrong()))
        client.sendMessage(b"x")
        self.pump()
        self.assertEqual(backend.closes, [(True, 1011, "proxyws: websocket filter failed")])

    def test_otherWebsocketsGoOn(self):
        """
        A second websocket on the same route works after the first failed.
        """

        @implementer(IWebSocketFilter)
        class FailsOnce(Passing):
            failed = False

            def message(self, connection, message):
                if not FailsOnce.failed:
                    FailsOnce.failed = True
                    raise RuntimeError("once")

        route = self.route(FailsOnce())
        first = self.openWebSocket(route)
        first[0].sendMessage(b"x")
        self.pump()
        self.flushLoggedErrors(RuntimeError)
        client = clientFactory(self.reactor).buildProtocol(FRONT)
        self.connectClient(client)
        self.pump()
        backend = backendFactory(self.reactor).buildProtocol(FRONT)
        self.acceptBackend(backend)
        self.pump()
        client.sendMessage(b"y")
        self.pump()
        self.assertEqual(backend.messages, [(False, b"y")])


class WaitingTests(MessageTestCase):
    """
    A filter answering with L{Deferred}s: order kept, reading paused,
    control frames on time, a timeout.
    """

    def open(self, extra=""):
        self.waiting = WaitingMessages()
        return self.openWebSocket(self.route(self.waiting, extra=extra))

    def test_orderKept(self):
        """
        Messages of one direction wait for the first's L{Deferred}, then
        pass in order; the client's socket is not read meanwhile.
        """
        client, backend = self.open()
        client.sendMessage(b"one")
        client.sendMessage(b"two")
        self.pump()
        self.assertEqual(backend.messages, [])
        self.assertEqual(len(self.waiting.pending), 1)
        self.assertEqual(self.clientConnection.serverIO.producerState, "paused")
        self.waiting.pending[0].callback(None)
        self.pump()
        self.waiting.pending[1].callback(None)
        self.pump()
        self.assertEqual(backend.messages, [(False, b"one"), (False, b"two")])
        self.assertEqual(self.clientConnection.serverIO.producerState, "producing")

    def test_pingsPass(self):
        """
        A ping passes while a message of its direction waits.
        """
        client, backend = self.open()
        client.sendMessage(b"one")
        self.pump()
        self.clientConnection.serverIO.resumeProducing()
        client.sendPing(b"still here")
        self.pump()
        self.assertEqual(backend.pings, [b"still here"])
        self.assertEqual(backend.messages, [])

    def test_closeAfterMessages(self):
        """
        A close frame waits for the messages before it.
        """
        client, backend = self.open()
        client.sendMessage(b"one")
        client.sendClose(1000, "done")
        self.pump()
        self.assertEqual(backend.closes, [])
        self.waiting.pending[0].callback(None)
        self.pump()
        self.assertEqual(backend.messages, [(False, b"one")])
        self.assertEqual(backend.closes, [(True, 1000, "done")])

    def test_timeout(self):
        """
        A L{Deferred} that never fires: after C{plugin_timeout} both legs
        are closed with 1011.
        """
        # The default plugin_timeout, 10 s.
        client, backend = self.openWebSocket(self.route(WaitingMessages()))
        client.sendMessage(b"one")
        self.pump()
        self.advance(9.9)
        self.assertEqual(backend.closes, [])
        self.advance(0.2)
        close = (True, 1011, "proxyws: websocket filter timed out")
        self.assertEqual((client.closes, backend.closes), ([close], [close]))

    def test_cancelledWhenGone(self):
        """
        A websocket that ends while a message waits cancels the L{Deferred}.
        """
        client, backend = self.open()
        client.sendMessage(b"one")
        self.pump()
        from twisted.internet.error import ConnectionLost

        self.clientConnection.lose(ConnectionLost())
        self.backendConnection.lose(ConnectionLost())
        self.pump()
        self.assertEqual(self.waiting.cancelled, 1)


class CompressionTests(MessageTestCase):
    """
    Compressed and fragmented messages, rewritten, against Autobahn's and
    the C{websockets} library's codecs.
    """

    def exchange(self, client, backend):
        """
        Send compressible messages both ways: whole, in Autobahn's
        fragments, and streamed frame by frame.

        @return: what each side should get.
        """
        sent = [b"hello " + LONG, b"keep " + LONG, b"drop", b"again " + LONG, b"keep"]
        for peer in (client, backend):
            for payload in sent:
                peer.sendMessage(payload)
            peer.sendMessage(b"fragmented " + LONG, fragmentSize=17)
            peer.beginMessage()
            for piece in (b"stream", b"ed ", LONG):
                peer.sendMessageFrame(piece)
            peer.endMessage()
            peer.sendMessage(LONG, isBinary=True, fragmentSize=100)
        return [
            (False, b"HELLO " + LONG.upper()),
            (False, b"keep " + LONG),
            (False, b"AGAIN " + LONG.upper()),
            (False, b"keep"),
            (False, b"FRAGMENTED " + LONG.upper()),
            (False, b"STREAMED " + LONG.upper()),
            (True, LONG),
        ]

    def test_autobahn(self):
        """
        For each of L{COMPRESSION}, Autobahn's peers exchange compressed
        messages, fragmented or not; the filter's rewrites reach each side
        whole.
        """
        for name, offer, accept in COMPRESSION:
            client, backend = self.openCompressed(self.route(Rewriter()), offer, accept)
            expected = self.exchange(client, backend)
            self.pump()
            self.assertEqual(client.messages, expected, name)
            self.assertEqual(backend.messages, expected, name)
            self.assertEqual((client.closes, backend.closes), ([], []), name)

    def test_websockets(self):
        """
        For each of L{WEBSOCKETS}, ends using the C{websockets} library's
        codec exchange compressed messages in one or several frames; the
        filter's rewrites reach each side whole and decode.
        """
        for offer, answer, *parameters in WEBSOCKETS:
            client, backend = self.openWebsockets(self.route(Rewriter()), offer, answer, *parameters)
            for end in (client, backend):
                end.send(b"one " + LONG, pieces=3)
                end.send(b"keep " + LONG)
                end.send(b"drop")
                end.send(b"two " + LONG)
                end.send(LONG, Opcode.BINARY, pieces=4)
            self.pump()
            expected = [
                (Opcode.TEXT, b"ONE " + LONG.upper()),
                (Opcode.TEXT, b"keep " + LONG),
                (Opcode.TEXT, b"TWO " + LONG.upper()),
                (Opcode.BINARY, LONG),
            ]
            self.assertEqual(client.messages, expected, offer)
            self.assertEqual(backend.messages, expected, offer)

    def test_unchangedFramesPass(self):
        """
        Messages a filter passes go out as the frames they came in, byte for
        byte: masked, compressed and fragmented as the sender wrote them.
        """
        offer = b"permessage-deflate; client_max_window_bits"
        passing = Passing()
        client, backend = self.openRaw(
            self.route(passing), offer, b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
        )
        extension = PerMessageDeflate(False, False, 15, 15)
        frames = b"".join(
            Frame(Opcode.TEXT if n == 0 else Opcode.CONT, piece, n == 2).serialize(
                mask=True, extensions=[extension]
            )
            for n, piece in enumerate([b"abc" * 50, b"def" * 50, b"ghi"])
        )
        received = []
        backend.receiver = received.append
        self.clientConnection.clientIO.write(frames)
        self.pump()
        self.assertEqual(b"".join(received), frames)
        self.assertEqual(passing.messages[0].payload, b"abc" * 50 + b"def" * 50 + b"ghi")
        self.assertTrue(passing.messages[0].compressed)


class LimitTests(MessageTestCase):
    """
    Messages are held whole, within a limit: inflating stops at it.
    """

    def compressedZeros(self, size):
        """
        A masked frame of a compressed text message of C{size} spaces.
        """
        deflate = zlib.compressobj(wbits=-15)
        payload = (deflate.compress(b" " * size) + deflate.flush(zlib.Z_SYNC_FLUSH))[:-4]
        return wsmessages.dataFrame(0xC1, payload, os.urandom(4))

    def openCompressedRaw(self, route):
        offer = b"permessage-deflate"
        return self.openRaw(route, offer, b"Sec-WebSocket-Extensions: permessage-deflate\r\n")

    def assertClosedWith(self, client, code, reason):
        frames, _ = readFrames(client.received)
        close = [f for f in frames if f.opcode == Opcode.CLOSE]
        self.assertEqual(bytes(close[0].data), struct.pack("!H", code) + reason)

    def test_inflatedOverLimit(self):
        """
        A small compressed message that inflates over the route's
        C{max_message_size} closes both legs with 1009; the proxy never
        holds more than the limit of it.
        """
        client, backend = self.openCompressedRaw(
            self.route(Passing(), extra="max_message_size = 1000")
        )
        received = []
        backend.receiver = received.append
        bomb = self.compressedZeros(50 * 1024 * 1024)
        self.assertLess(len(bomb), 60000)
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        self.clientConnection.clientIO.write(bomb)
        self.pump()
        peak = tracemalloc.get_traced_memory()[1]
        self.assertLess(peak, 5 * 1024 * 1024)
        self.assertClosedWith(client, 1009, b"message larger than 1000 bytes")
        frames, _ = readFrames(b"".join(received))
        self.assertEqual([f.opcode for f in frames], [Opcode.CLOSE])

    def test_defaultLimit(self):
        """
        Without C{max_message_size}, the limit is L{DEFAULT_MESSAGE_LIMIT}.
        """
        self.patch(wsmessages, "DEFAULT_MESSAGE_LIMIT", 4096)
        client, backend = self.openCompressedRaw(self.route(Passing()))
        self.clientConnection.clientIO.write(self.compressedZeros(5000))
        self.pump()
        self.assertClosedWith(client, 1009, b"message larger than 4096 bytes")

    def test_invalidCompressedData(self):
        """
        Compressed data that does not inflate closes both legs with 1007.
        """
        client, backend = self.openCompressedRaw(self.route(Passing()))
        frame = wsmessages.dataFrame(0xC1, b"\xff\xff\xff\xff", os.urandom(4))
        self.clientConnection.clientIO.write(frame)
        self.pump()
        self.assertClosedWith(client, 1007, b"invalid compressed message")

    def test_badFrames(self):
        """
        A frame no peer may send (a control frame with a long payload, an
        unmasked frame from the client, a masked one from the backend)
        drops both connections, as the frame relay does, and nothing of it
        passes.
        """
        longPing = bytes((0x89, 0x80 | 126)) + struct.pack("!H", 200) + os.urandom(4) + b"x" * 200
        for side, frame in [
            ("client", longPing),
            ("client", wsmessages.dataFrame(0x81, b"unmasked")),
            ("backend", wsmessages.dataFrame(0x81, b"masked", os.urandom(4))),
        ]:
            client, backend = self.openRaw(self.route(Passing()))
            received = []
            backend.receiver = received.append
            if side == "client":
                self.clientConnection.clientIO.write(frame)
            else:
                self.backendConnection.serverIO.write(frame)
            self.pump()
            self.assertTrue(self.clientConnection.serverIO.aborted, frame)
            self.assertEqual((client.received, received), (b"", []), frame)

