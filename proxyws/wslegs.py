"""
The two legs of a websocket relay: Autobahn protocols that hand frames and
closes to their L{proxyws.wsproxy.Relay}.

L{FrontendProtocol} faces the client (Autobahn's server protocol on the
upgraded connection), L{BackendProtocol} the backend (Autobahn's client
protocol).  Both relay a message frame by frame as it arrives, or, in the
fast mode (L{proxyws.wsfast}), hand the raw bytes to the relay.
"""

from autobahn.twisted.websocket import WebSocketClientProtocol, WebSocketServerProtocol
from pprint import pformat

from autobahn.websocket import protocol as _protocolModule
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.protocol import Factory
from twisted.web.http import _ChunkedTransferDecoder

from . import wscompress


class _LazyFormat:
    """
    Formats its value with C{pprint.pformat} only if a log line is written.

    Autobahn passes C{pformat(...)} of its settings to debug log calls on
    every connection, whether or not debug lines are kept: about a third
    of the proxy's CPU per websocket handshake.
    """

    __slots__ = ("_value",)

    def __init__(self, value):
        self._value = value

    def __format__(self, spec):
        return format(pformat(self._value), spec)

    __str__ = __repr__ = lambda self: pformat(self._value)


_protocolModule.pformat = _LazyFormat

# The most of a refusal's body the proxy waits for and relays.
REFUSAL_BODY_LIMIT = 65536


def refusalBody(fields, data):
    """
    The body of a backend's answer other than 101, once enough has come.

    @param fields: the answer's header fields.
    @param data: the bytes after its head so far.
    @return: the body (decoded when chunked, at most
        L{REFUSAL_BODY_LIMIT} bytes), or L{None} to wait for more.
    """
    headers = {name.lower(): value for name, value in fields}
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        chunks = []
        done = []
        decoder = _ChunkedTransferDecoder(chunks.append, done.append)
        try:
            decoder.dataReceived(data)
        except Exception:
            return b"".join(chunks)
        body = b"".join(chunks)
        if done or len(body) >= REFUSAL_BODY_LIMIT:
            return body[:REFUSAL_BODY_LIMIT]
        return None
    length = headers.get(b"content-length", b"")
    if length.isdigit() and len(data) < min(int(length), REFUSAL_BODY_LIMIT):
        return None
    return data[: int(length)] if length.isdigit() else data


def parseHead(head):
    """
    Split an HTTP response head into its status and its header lines.

    @param head: the bytes up to and including the blank line.
    @return: C{(code, phrase, [(name, value), ...])}; code 0 when the status
        line is not HTTP.
    """
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    try:
        code = int(parts[1])
    except (IndexError, ValueError):
        return 0, b"", []
    fields = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            fields.append((name.strip(), value.strip()))
    return code, parts[2] if len(parts) > 2 else b"", fields


class _Leg:
    """
    What both legs do: hand frames and closes to the relay's other leg.

    @ivar relay: the L{Relay}.
    @ivar partner: the other leg, once both are open.
    """

    relay = None
    partner = None
    fast = False

    def dataReceived(self, data):
        """
        Bytes from the peer: frames as they are in the fast mode, else
        Autobahn's parser.
        """
        if self.fast:
            self.relay.forward(self.slim, data)
        else:
            self._dataReceived(data)

    def consumeData(self):
        """
        Autobahn's buffered bytes: in the fast mode, relay them as they are.
        """
        if self.fast:
            data, self.data = self.data, b""
            if data:
                self.relay.forward(self.slim, data)
        else:
            WebSocketProtocol.consumeData(self)

    def onMessageBegin(self, isBinary):
        """
        A message starts: start one on the other side.
        """
        WebSocketProtocol.onMessageBegin(self, isBinary)
        if self.partner is not None:
            self.partner.beginMessage(isBinary)

    def onMessageFrameData(self, payload):
        """
        Frame payload, inflated: pass it on as a frame of its own, which the
        other leg compresses as it negotiated.  (Each frame is written
        whole, so no ping or close can fall inside one.)
        """
        self.relay.activity()
        if self.partner is not None and not self.failedByMe:
            self.partner.sendMessageFrame(payload)

    def onMessageFrameEnd(self):
        """
        Nothing to do: the frame went on with its data (Autobahn's own
        would gather it into a message).
        """

    def onMessageEnd(self):
        """
        The message is complete: complete it on the other side.
        """
        if self.partner is not None and not self.failedByMe:
            self.partner.endMessage()

    def onCloseFrame(self, code, reasonRaw):
        """
        The peer closes: pass its code and reason to the other side first.
        """
        if self.state == self.STATE_OPEN:
            self.relay.closeReceived(self, code, reasonRaw)
        return WebSocketProtocol.onCloseFrame(self, code, reasonRaw)

    def onClose(self, wasClean, code, reason):
        """
        The connection is closed.
        """
        self.relay.legClosed(self, wasClean, code, reason)


class FrontendProtocol(_Leg, WebSocketServerProtocol):
    """
    The client's leg: Autobahn's server protocol on the upgraded connection.
    """

    side = "client"

    def dropConnection(self, abort=False):
        """
        Close the TCP connection; after a clean close handshake, with a FIN
        rather than Autobahn's reset, so the client reads the last frames.
        """
        if self.wasClean and self.state == self.STATE_CLOSING:
            abort = False
        WebSocketServerProtocol.dropConnection(self, abort)

    def onConnect(self, request):
        """
        Answer the client's handshake as the backend answered ours.
        """
        return self.relay.clientAnswer()

    def perMessageCompressionAccept(self, offers):
        """
        Accept the client's compression offer only as the backend did.
        """
        return self.relay.mirrorCompression(offers)

    def onOpen(self):
        """
        Both legs are open.
        """
        self.relay.clientOpen(self)


class BackendProtocol(_Leg, WebSocketClientProtocol):
    """
    The backend's leg: Autobahn's client protocol.
    """

    side = "backend"

    def onConnecting(self, transportDetails):
        """
        Send the backend the client's path, headers, subprotocols and
        compression offers.
        """
        self.perMessageCompressionOffers = self.relay.compressionOffers(self)
        self.perMessageCompressionAccept = wscompress.acceptResponse
        return self.relay.backendRequest()

    def connectionMade(self):
        """
        The TCP (or TLS) connection is up: the handshake starts.
        """
        self.relay.backendConnected(self)
        WebSocketClientProtocol.connectionMade(self)

    def processHandshake(self):
        """
        Relay an answer other than 101 to the client as it stands.
        """
        end = self.data.find(b"\r\n\r\n")
        if end < 0:
            return
        code, phrase, fields = parseHead(self.data[: end + 4])
        if code == 101:
            return WebSocketClientProtocol.processHandshake(self)
        body = refusalBody(fields, self.data[end + 4 :])
        if body is None:
            return  # wait for the rest of a small error page
        self.relay.backendRefused(code, phrase, fields, body)
        self.dropConnection(abort=True)

    def onConnect(self, response):
        """
        The backend accepted the upgrade.
        """
        self.relay.backendAccepted(response.protocol, self.http_response_data)

    def onOpen(self):
        """
        The backend leg is open: upgrade the client.
        """
        self.relay.backendOpen()


class _BackendConnector(Factory):
    """
    Builds the backend leg of one relay from the route's client factory.
    """

    noisy = False

    def __init__(self, relay, factory):
        self._relay = relay
        self._factory = factory

    def buildProtocol(self, addr):
        """
        @return: a L{BackendProtocol} tied to the relay.
        """
        protocol = self._factory.buildProtocol(addr)
        protocol.relay = self._relay
        # Autobahn checks the backend's subprotocol against its factory's
        # list: give this connection a view holding the client's list.
        protocol.factory = _FactoryView(self._factory, self._relay.clientProtocols())
        return protocol


class _FactoryView:
    """
    One connection's view of a shared Autobahn client factory, with its own
    subprotocol list.
    """

    def __init__(self, factory, protocols):
        self._factory = factory
        self.protocols = protocols

    def __getattr__(self, name):
        return getattr(self._factory, name)


class _ReactorTimer:
    """
    Autobahn's timers on a given reactor, to the precision asked.

    Autobahn batches its handshake, ping and close timers on txaio's timer,
    which rounds deadlines to whole seconds and runs on the global reactor.
    """

    def __init__(self, reactor):
        self._reactor = reactor

    def call_later(self, delay, func, *args, **kwargs):
        """
        @return: a call whose C{cancel} may be called after it ran.
        """
        return _Call(self._reactor.callLater(delay, func, *args, **kwargs))


class _Call:
    def __init__(self, call):
        self._call = call

    def cancel(self):
        if self._call.active():
            self._call.cancel()


class _Producer:
    """
    One leg's transport as the producer of the other leg's writes.  Pausing
    and resuming pass through; stopping does not, so that when one leg's
    connection ends the other can still finish its close handshake.
    """

    def __init__(self, transport):
        self._transport = transport

    def pauseProducing(self):
        self._transport.pauseProducing()

    def resumeProducing(self):
        self._transport.resumeProducing()

    def stopProducing(self):
        pass


class FastLeg:
    """
    One leg in the fast mode (L{proxyws.wsfast}), standing in for the
    Autobahn protocol it replaces so that the latter can be freed: an idle
    websocket then costs a transport and a few small objects per leg.

    @ivar side: C{"client"} or C{"backend"}.
    """

    __slots__ = ("relay", "side", "transport", "partner", "scanner", "dataReceived", "fast")

    def __init__(self, relay, side, transport):
        self.relay = relay
        self.side = side
        self.transport = transport
        self.partner = None
        self.scanner = None
        self.fast = True

    def connectionLost(self, reason=None):
        """
        The connection is gone.
        """
        self.relay.legClosed(self, False, None, None)

    def dropConnection(self, abort=False):
        """
        Close the connection (at once when C{abort}).
        """
        if abort:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()


def takeOver(leg, slim):
    """
    Make the transport below an Autobahn leg deliver to C{slim} instead.

    @return: whether it could be done (the transport is Twisted's TCP, with
        the endpoint's wrapper or not, or TLS).
    """
    holder = leg.transport
    if getattr(holder, "wrappedProtocol", None) is leg:
        holder.wrappedProtocol = slim  # TLS
        return True
    holder = getattr(leg.transport, "protocol", None)
    if getattr(holder, "_wrappedProtocol", None) is leg:
        holder._wrappedProtocol = slim  # an endpoint's wrapper
        holder.dataReceived = slim.dataReceived
        return True
    return False
