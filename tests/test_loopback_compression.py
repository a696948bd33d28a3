"""
End-to-end tests of permessage-deflate through the relay: the backend is
offered exactly what the client offered, the client gets exactly what the
backend answered, and compressed frames pass through the proxy unchanged.
Real backends (Autobahn's echo server accepting compression, a raw-socket
backend) and real clients (the C{websockets} library in a thread, raw
sockets), over 127.0.0.1.
"""

import zlib

from autobahn.websocket.compress import PerMessageDeflateOfferAccept
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import Protocol
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import connect as websocketsConnect

from .helpers import proxyConfig, startProxy
from .wsbackends import (
    WAIT,
    EchoBackend,
    Event,
    connectRaw,
    startSocketBackend,
    switchingProtocols,
    upgradeRequest,
    waitUntil,
)

# A message that compresses well, so that a compressed leg is obvious.
TEXT = "proxyws compresses nothing itself. " * 200

# A deflate stream holding "hello" as a stored (uncompressed) block: valid,
# but no compressor would write it, so a proxy that inflated and deflated
# again could not give the client these bytes.
STORED_HELLO = b"\x01\x05\x00\xfa\xffhello"

# The frame the raw backend sends: FIN, RSV1 (compressed), text.
COMPRESSED_FRAME = bytes((0xC1, len(STORED_HELLO))) + STORED_HELLO


def acceptingBackend(testCase, **acceptOptions):
    """
    The echo backend, accepting the client's first permessage-deflate offer
    with C{acceptOptions} (see Autobahn's C{PerMessageDeflateOfferAccept}).
    """
    backend = EchoBackend(testCase)

    def accept(offers):
        return PerMessageDeflateOfferAccept(offers[0], **acceptOptions)

    backend.factory.setProtocolOptions(perMessageCompressionAccept=accept)
    return backend


def echoThroughProxy(port, extensions, messages):
    """
    Connect the C{websockets} client to the proxy offering C{extensions},
    send each message and read its echo (in a thread).

    @return: C{(the 101's Sec-WebSocket-Extensions, the echoes)}.
    """
    with websocketsConnect(
        "ws://127.0.0.1:%d/echo" % (port,),
        compression=None,
        extensions=extensions,
        open_timeout=WAIT,
        close_timeout=WAIT,
        ping_interval=None,
        max_size=None,
    ) as ws:
        echoes = []
        for message in messages:
            ws.send(message)
            echoes.append(ws.recv())
        return ws.response.headers.get("Sec-WebSocket-Extensions"), echoes


class CompressionTests(TestCase):
    """
    A client offering permessage-deflate, through the proxy, to a backend
    that accepts or declines it.
    """

    timeout = 15

    def proxyTo(self, backend, extra=""):
        """
        Start a proxy sending C{/} to C{backend} as C{ws://}.

        @return: the proxy's port.
        """
        route = 'path = "/"\nbackend = "ws://127.0.0.1:%d/"\n%s' % (backend.port, extra)
        return startProxy(self, proxyConfig(0, route=route))[1]

    @inlineCallbacks
    def assertEchoes(self, port, extensions):
        """
        Text, binary and a compressible large message echo whole.

        @return: the 101's C{Sec-WebSocket-Extensions}.
        """
        messages = ["hello", b"\x00\x01binary", TEXT, TEXT.encode("ascii")]
        answer, echoes = yield deferToThread(echoThroughProxy, port, extensions, messages)
        self.assertEqual(echoes, messages)
        return answer

    @inlineCallbacks
    def test_offerAccepted(self):
        """
        The client's default offer (C{client_max_window_bits} without a
        value) reaches the backend unchanged, the backend's answer reaches
        the client unchanged, and messages echo.
        """
        backend = acceptingBackend(self)
        port = self.proxyTo(backend)
        answer = yield self.assertEchoes(port, [ClientPerMessageDeflateFactory()])
        offered = backend.handshakes[0].headers["sec-websocket-extensions"]
        self.assertEqual(offered, "permessage-deflate; client_max_window_bits")
        self.assertEqual(answer, "permessage-deflate")

    @inlineCallbacks
    def test_windowBits(self):
        """
        C{client_max_window_bits=9}, a value a client may ask for, reaches
        the backend; the backend takes it, and both legs use it.
        """
        backend = acceptingBackend(self, request_max_window_bits=9)
        port = self.proxyTo(backend)
        answer = yield self.assertEchoes(
            port, [ClientPerMessageDeflateFactory(client_max_window_bits=9)]
        )
        offered = backend.handshakes[0].headers["sec-websocket-extensions"]
        self.assertEqual(offered, "permessage-deflate; client_max_window_bits=9")
        self.assertEqual(answer, "permessage-deflate; client_max_window_bits=9")

    @inlineCallbacks
    def test_noContextTakeover(self):
        """
        C{server_no_context_takeover} offered and accepted, and the backend
        adding C{client_no_context_takeover} of its own: the client gets
        both, and a stream of messages echoes.
        """
        backend = acceptingBackend(self, request_no_context_takeover=True)
        port = self.proxyTo(backend)
        answer = yield self.assertEchoes(
            port, [ClientPerMessageDeflateFactory(server_no_context_takeover=True)]
        )
        offered = backend.handshakes[0].headers["sec-websocket-extensions"]
        self.assertIn("server_no_context_takeover", offered)
        self.assertIn("server_no_context_takeover", answer)
        self.assertIn("client_no_context_takeover", answer)

    @inlineCallbacks
    def test_backendDeclines(self):
        """
        A backend that declines compression while the client offers it: the
        client gets no extension, and messages echo uncompressed.
        """
        backend = EchoBackend(self)
        port = self.proxyTo(backend)
        answer = yield self.assertEchoes(port, [ClientPerMessageDeflateFactory()])
        self.assertIn("sec-websocket-extensions", backend.handshakes[0].headers)
        self.assertIsNone(answer)

    @inlineCallbacks
    def test_routeTurnsItOff(self):
        """
        With C{compression = false} on the route, the backend is offered
        nothing (though it would accept) and the client gets nothing.
        """
        backend = acceptingBackend(self)
        port = self.proxyTo(backend, "compression = false\n")
        answer = yield self.assertEchoes(port, [ClientPerMessageDeflateFactory()])
        self.assertNotIn("sec-websocket-extensions", backend.handshakes[0].headers)
        self.assertIsNone(answer)


class CompressedBackendProtocol(Protocol):
    """
    Accepts the upgrade with C{permessage-deflate}, sends
    L{COMPRESSED_FRAME}, and records what it receives.
    """

    def connectionMade(self):
        """
        Start recording.
        """
        self.factory.protocols.append(self)
        self.received = b""
        self.lost = Event()
        self._open = False

    def dataReceived(self, data):
        """
        Answer the handshake, then record frames.
        """
        if self._open:
            self.received += data
            return
        self.factory.requests.append(data)
        self.transport.write(switchingProtocols(data, self.factory.answer) + COMPRESSED_FRAME)
        self._open = True

    def connectionLost(self, reason):
        """
        The connection is gone.
        """
        self.lost.fire(reason.value)


class PassThroughTests(TestCase):
    """
    Compressed frames pass through the proxy as they are.
    """

    timeout = 15

    def start(self, answer):
        """
        A raw compressed backend answering with C{answer} (header lines),
        and a proxy to it.

        @return: C{(factory, proxy port)}.
        """
        factory, port = startSocketBackend(self, CompressedBackendProtocol)
        factory.answer = answer
        route = 'path = "/"\nbackend = "ws://127.0.0.1:%d/"\n' % (port,)
        return factory, startProxy(self, proxyConfig(0, route=route))[1]

    @inlineCallbacks
    def test_framesUnchanged(self):
        """
        The backend's compressed frame reaches the client byte for byte, and
        a compressed frame from the client reaches the backend byte for
        byte.
        """
        factory, port = self.start(b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
        offer = [(b"Sec-WebSocket-Extensions", b"permessage-deflate")]
        client = yield connectRaw(self, port, upgradeRequest(b"/", b"127.0.0.1", offer))
        head = yield client.head.wait()
        self.assertIn(b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n", head)
        yield waitUntil(lambda: client.frames)
        self.assertEqual(client.frames[0], (True, 0x1, STORED_HELLO))
        deflate = zlib.compressobj(wbits=-15)
        payload = (deflate.compress(b"hello") + deflate.flush(zlib.Z_SYNC_FLUSH))[:-4]
        mask = b"\x01\x02\x03\x04"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        frame = bytes((0xC1, 0x80 | len(payload))) + mask + masked
        client.transport.write(frame)
        backend = factory.protocols[0]
        yield waitUntil(lambda: backend.received)
        self.assertEqual(backend.received, frame)

    @inlineCallbacks
    def test_answerNotOffered(self):
        """
        A backend that answers with compression the client did not offer:
        502, and no websocket.
        """
        _, port = self.start(b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
        client = yield connectRaw(self, port, upgradeRequest(b"/", b"127.0.0.1"))
        head = yield client.head.wait()
        self.assertTrue(head.startswith(b"HTTP/1.1 502 "), head)

    @inlineCallbacks
    def test_answerOutsideOffer(self):
        """
        A backend whose answer asks for more than the offer allows
        (C{client_max_window_bits} the client did not offer): 502.
        """
        _, port = self.start(
            b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10\r\n"
        )
        offer = [(b"Sec-WebSocket-Extensions", b"permessage-deflate")]
        client = yield connectRaw(self, port, upgradeRequest(b"/", b"127.0.0.1", offer))
        head = yield client.head.wait()
        self.assertTrue(head.startswith(b"HTTP/1.1 502 "), head)
