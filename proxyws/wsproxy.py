"""
The websocket relay: an Autobahn server protocol facing the client, an
Autobahn client protocol facing the backend, and a L{Relay} between them.

The backend decides the handshake.  The client's upgrade request is held
(twisted.web buffers what the client sends meanwhile, early frames included)
while the relay opens the backend connection with the client's path, query,
subprotocols and end-to-end headers.  If the backend answers 101, the client
connection is handed to the Autobahn server protocol together with the
buffered bytes, and the client sees the backend's subprotocol and cookies;
if it answers anything else, the client gets that answer as it stands.

Messages are relayed frame by frame, so a message of any size passes without
being assembled.  Each leg's transport is the other's streaming producer, so
a reader that is slow on one side pauses the socket on the other.  Close
codes and reasons pass both ways unchanged; when one side goes away without
a close frame, the other side is closed with the code in L{LOST}.
"""

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketServerFactory
from autobahn.websocket.types import ConnectingRequest
from twisted.web.server import NOT_DONE_YET

from . import wscompress
from .errors import BadGateway, BadRequest, Forbidden, GatewayTimeout
from .httpproxy import _connectError, backendRequestHeaders, errorPage, relayedFields
from .logs import ProxyLogger
from .pool import backendEndpoint
from .routing import hostMatches, hostOfHeader
from .wsfast import FastRelay
from .wslegs import (
    BackendProtocol,
    FrontendProtocol,
    _BackendConnector,
    _Producer,
    _ReactorTimer,
    parseHead,
)

# What the other side is told when one side goes away without a close frame
# (RFC 6455 7.4.1): the client vanished -> the backend is told the client
# is "going away"; the backend vanished -> the client gets "internal error".
LOST = {
    "client": (1001, "proxyws: client connection lost"),
    "backend": (1011, "proxyws: backend connection lost"),
}

# A graceful stop closes every websocket with this, on both legs.
SHUTDOWN = (1001, "proxyws: server shutting down")

# Request headers that the Autobahn client writes itself, from the values
# the relay gives it; the client's own are not copied.
_HANDSHAKE_HEADERS = frozenset(
    [
        b"host",
        b"upgrade",
        b"connection",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-protocol",
        b"sec-websocket-extensions",
        b"origin",
        b"user-agent",
        b"pragma",
        b"cache-control",
        b"content-length",
    ]
)

# Response headers of the backend's 101 that are the handshake itself; the
# Autobahn server writes the client's.  The rest (Set-Cookie, ...) pass on.
_RESPONSE_HANDSHAKE_HEADERS = frozenset(
    [
        b"upgrade",
        b"connection",
        b"sec-websocket-accept",
        b"sec-websocket-protocol",
        b"sec-websocket-extensions",
        b"server",
        b"date",
        b"content-length",
    ]
)

_log = ProxyLogger()


def originAllowed(patterns, origin):
    """
    Whether an C{Origin} header value passes a route's allow-list.

    @param patterns: lower-cased entries: full origins
        (C{b"https://app.example.com"}) or host patterns
        (C{b"*.example.com"}); empty allows every origin.
    @param origin: the header value, or L{None}.
    @rtype: L{bool}
    """
    if not patterns:
        return True
    if not origin:
        return False
    origin = origin.lower().rstrip(b"/")
    host = hostOfHeader(origin.partition(b"://")[2])
    return any(
        origin == pattern if b"://" in pattern else hostMatches((pattern,), host)
        for pattern in patterns
    )


def _splitHost(value, defaultPort):
    """
    Split a C{Host} header value into name and port.

    @return: C{(name, port)}; IPv6 names keep their brackets.
    """
    name, sep, port = value.rpartition(":")
    if sep and port.isdigit() and (not name.startswith("[") or name.endswith("]")):
        return name, int(port)
    return value, defaultPort


def _setBufferSize(transport, size):
    """
    Set the write-buffer threshold of a transport, or of the TCP transport
    below a TLS one.
    """
    while transport is not None and not hasattr(transport, "bufferSize"):
        transport = getattr(transport, "transport", None)
    if transport is not None:
        transport.bufferSize = size


class Relay:
    """
    One websocket between a client and a backend.

    States, each entered by the method named:
      - connecting (L{start}): opening the backend connection and handshake;
      - upgrading (L{backendOpen}): the backend is open, the client's
        handshake is being answered;
      - open (L{clientOpen}): frames flow both ways;
      - closed (L{legClosed} of the last leg): both legs are closed and the
        access-log line is written.
    """

    def __init__(self, resource, request, target):
        self._resource = resource
        self._route = resource.route
        self._reactor = resource.reactor
        self.request = request
        self._target = target
        self._backend = None
        self._frontend = None
        self._timer = None
        self._idleTimer = None
        self._answer = None
        self._closed = set()
        self._fast = None
        self._sentBefore = 0
        self._offers = []
        self._why = None

    def start(self):
        """
        Connect to the backend.
        """
        route = self._route
        _log.debug(
            "websocket {uri}: serving URL {url}",
            uri=self.request.uri.decode('latin-1'),
            url=self.backendURL(),
        )
        endpoint = backendEndpoint(
            self._reactor, route.backend, route.connectTimeout, self._resource.tlsPolicy
        )
        self._connecting = endpoint.connect(_BackendConnector(self, self._resource.clientFactory))
        self._connecting.addErrback(self._connectFailed)
        self.request.notifyFinish().addErrback(self._clientGone)

    def backendURL(self):
        """
        @return: the backend URL this websocket is relayed to, as text.
        """
        backend = self._route.backend
        return (backend.origin(backend.wsScheme) + self._target).decode("ascii", "replace")

    def _connectFailed(self, reason):
        if self._backend is None and not self.request.finished:
            self._refuse(_connectError(reason), reason.getErrorMessage())

    def _clientGone(self, reason):
        """
        The client went away before its websocket opened.
        """
        self._cancelTimer()
        if self._backend is not None:
            self._backend.dropConnection(abort=True)
        elif self._connecting is not None:
            self._connecting.cancel()

    def forgetConnecting(self):
        """
        The websocket is open: the connection attempt (which holds the
        backend protocol) is no longer needed.
        """
        self._connecting = None

    def backendConnected(self, protocol):
        """
        The backend connection is up; its handshake has C{response_timeout}.
        """
        self._backend = protocol
        self._timer = self._reactor.callLater(
            self._route.responseTimeout, self._handshakeTimedOut
        )

    def _handshakeTimedOut(self):
        self._timer = None
        self._refuse(
            GatewayTimeout("the backend did not answer the websocket handshake in time"),
            "handshake timeout",
        )
        self._backend.dropConnection(abort=True)

    def _cancelTimer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def backendRequest(self):
        """
        @return: the C{ConnectingRequest} the backend leg sends.
        """
        request = self.request
        route = self._route
        headers = request.requestHeaders
        host = headers.getRawHeaders(b"Host")
        forwarded = backendRequestHeaders(request, route, _HANDSHAKE_HEADERS)
        hostName, port = route.backend.host, route.backend.port
        if ":" in hostName:
            hostName = "[" + hostName + "]"
        if route.preserveHost and host:
            hostName, port = _splitHost(
                host[0].decode("latin-1"), 443 if request.scheme == b"https" else 80
            )
        agent = headers.getRawHeaders(b"User-Agent")
        origin = headers.getRawHeaders(b"Origin")
        return ConnectingRequest(
            host=hostName,
            port=port,
            resource=self._target.decode("latin-1"),
            headers={
                name.decode("latin-1"): (b"; " if name == b"Cookie" else b", ")
                .join(values)
                .decode("latin-1")
                for name, values in forwarded[1:]
            },
            useragent=agent[0].decode("latin-1") if agent else "",
            origin=origin[0].decode("latin-1") if origin else None,
            protocols=self.clientProtocols(),
        )

    def clientProtocols(self):
        values = self.request.requestHeaders.getRawHeaders(b"Sec-WebSocket-Protocol") or ()
        return [
            token.strip().decode("latin-1")
            for value in values
            for token in value.split(b",")
            if token.strip()
        ]

    def backendRefused(self, code, phrase, fields, body):
        """
        The backend answered the upgrade with something else than 101: the
        client gets that answer.
        """
        self._cancelTimer()
        request = self.request
        if request.finished or request.channel is None:
            return
        _log.info(
            "websocket {uri}: backend {url} refused the upgrade: {code}",
            uri=request.uri.decode('latin-1'),
            url=self.backendURL(),
            code=code,
        )
        if not code:
            errorPage(request, BadGateway("the backend answered the websocket handshake with garbage"))
            return
        request.setResponseCode(code, phrase)
        request.relayedFields = relayedFields(request, self._route, fields)
        request.responseHeaders.setRawHeaders(b"Content-Length", [b"%d" % len(body)])
        request.write(body)
        request.finish()

    def _refuse(self, error, detail):
        self._cancelTimer()
        request = self.request
        _log.info(
            "websocket {uri}: {status} from {url}: {detail}",
            uri=request.uri.decode('latin-1'),
            status=error.status,
            url=self.backendURL(),
            detail=detail,
        )
        if not request.finished and request.channel is not None and self._frontend is None:
            errorPage(request, error)

    def backendAccepted(self, protocol, head):
        """
        The backend answered 101: remember what the client should see.

        @param protocol: the subprotocol the backend chose, or L{None}.
        @param head: the backend's raw response head.
        """
        self._cancelTimer()
        headers = {}
        for name, value in parseHead(head)[2]:
            if name.lower() not in _RESPONSE_HANDSHAKE_HEADERS:
                headers.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
        self._answer = (protocol, headers)

    def backendOpen(self):
        """
        Hand the client connection to the Autobahn server protocol, with the
        upgrade request and what the client sent after it.
        """
        request = self.request
        channel = request.channel
        if channel is None:
            self._backend.dropConnection(abort=True)
            return
        front = self._resource.serverFactory.buildProtocol(request.getClientAddress())
        front.relay = self
        self._frontend = front
        transport = channel.transport
        transport.unregisterProducer()
        self._site = channel.site
        self._site.webSocketOpened(self, channel)
        buffered = b"".join(channel._dataBuffer)
        channel._dataBuffer = []
        channel._protocolUpgradeForWebsockets(front)
        front.dataReceived(self._upgradeRequest() + buffered)
        transport.resumeProducing()

    def _upgradeRequest(self):
        request = self.request
        lines = [request.method + b" " + request.uri + b" HTTP/1.1"]
        for name, values in request.requestHeaders.getAllRawHeaders():
            lines.extend(name + b": " + value for value in values)
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def clientAnswer(self):
        """
        @return: what the Autobahn server answers the client's handshake
            with: the backend's subprotocol and extra headers.
        """
        return self._answer

    def compressionOffers(self, backend):
        """
        @return: the client's permessage-deflate offers, to make to the
            backend (none when the route turns compression off).
        """
        if not self._route.compression:
            return []
        self._offers = wscompress.parseOffers(
            self.request.requestHeaders.getRawHeaders(b"Sec-WebSocket-Extensions"),
            backend._parseExtensionsHeader,
        )
        return self._offers

    def mirrorCompression(self, offers):
        """
        @return: the client leg's answer to the client's offers: the
            backend leg's parameters, or none.
        """
        return wscompress.mirrorAccept(offers, self._backend._perMessageCompress)

    def clientOpen(self, front):
        """
        Both legs are open: tie them together, each transport the other's
        producer, and choose how compressed messages are relayed.
        """
        back = self._backend
        front.partner, back.partner = back, front
        if wscompress.sameParameters(front._perMessageCompress, back._perMessageCompress) or (
            front._perMessageCompress is None and back._perMessageCompress is None
        ):
            # Frames can pass as they are.
            self._sentBefore = front.trafficStats.outgoingOctetsWireLevel
            self._fast = FastRelay(self, front, back)
            self._frontend, self._backend = self._fast.legs
        # Otherwise the legs' compression differs: Autobahn inflates what
        # each leg receives and the other deflates it again (wslegs).
        for transport in (front.transport, back.transport):
            # How much may wait to be written before the other side's
            # reading pauses (Twisted's threshold, and its read size).
            _setBufferSize(transport, self._route.wsBufferSize)
        front.transport.registerProducer(_Producer(back.transport), True)
        back.transport.registerProducer(_Producer(front.transport), True)
        if self._route.wsIdleTimeout:
            self._idleTimer = self._reactor.callLater(
                self._route.wsIdleTimeout, self._idle
            )

    def activity(self):
        """
        Data went one way or the other: restart the idle timer.
        """
        if self._idleTimer is not None:
            self._idleTimer.reset(self._route.wsIdleTimeout)

    def _idle(self):
        self._idleTimer = None
        self._why = "idle timeout"
        self._closeBoth(1001, b"proxyws: idle timeout")

    def _closeBoth(self, code, reason):
        if self._fast is not None:
            self._fast.closeBoth(code, reason)
            return
        for leg in (self._frontend, self._backend):
            if leg.state == leg.STATE_OPEN:
                leg.sendCloseFrame(code, reason)

    def closeReceived(self, leg, code, reasonRaw):
        """
        C{leg}'s peer sent a close frame: send the same to the other side.
        """
        self.noteClose(leg, code, reasonRaw)
        other = leg.partner
        if other is not None and other.state == other.STATE_OPEN:
            other.sendCloseFrame(code, reasonRaw)

    def noteClose(self, leg, code, reasonRaw):
        """
        Remember the first close as the reason the websocket closed.
        """
        if self._why is None:
            self._why = "{} closed with {} {!r}".format(
                leg.side, code, (reasonRaw or b"").decode("utf-8", "replace")
            )

    def forward(self, leg, data):
        """
        Bytes from C{leg}'s peer in the fast mode.
        """
        self._fast.forward(leg, data)

    def legClosed(self, leg, wasClean, code, reason):
        """
        C{leg}'s connection is gone: tell the other side if it is open, and
        finish when both are gone.
        """
        if leg.fast:
            self._closed.add(leg.side)
            other = leg.partner
            if other.transport is not None and other.side not in self._closed:
                # The gone leg no longer produces: let the other read its close.
                other.transport.unregisterProducer()
                other.transport.resumeProducing()
            self._fast.lost(leg)
            if len(self._closed) == 2:
                self._finished()
            return
        if self._frontend is None:
            # The backend leg closed before the client was upgraded.
            if self._answer is None and self._timer is not None:
                self._refuse(
                    BadGateway("the backend closed the connection during the websocket handshake"),
                    leg.wasNotCleanReason or "connection closed",
                )
            return
        self._closed.add(leg.side)
        other = self._frontend if leg is self._backend else self._backend
        if other.transport is not None and other.state != other.STATE_CLOSED:
            # The gone leg no longer produces: let the other read its close.
            other.transport.unregisterProducer()
            other.transport.resumeProducing()
        if other.state == other.STATE_OPEN:
            code, text = self.lostCode(leg, leg.wasNotCleanReason)
            other.sendCloseFrame(code, text.encode("utf-8"))
        if len(self._closed) == 2:
            self._finished()

    def lostCode(self, leg, why):
        """
        The close code and reason that tell one side its partner C{leg}
        went away without a close frame; remembered as why it closed.

        @param why: what happened, if known.
        """
        code, text = LOST[leg.side]
        why = why or "connection closed"
        if "ping" in why.lower():
            text = "proxyws: {} ping timeout".format(leg.side)
        if self._why is None:
            self._why = "{} lost: {}".format(leg.side, why)
        return code, text

    def _finished(self):
        if self._idleTimer is not None and self._idleTimer.active():
            self._idleTimer.cancel()
        self._idleTimer = None
        front = self._frontend
        request = self.request
        site = self._site
        site.webSocketClosed(self)
        if self._fast is not None:
            status, size = 101, self._sentBefore + self._fast.sentToClient
        else:
            status = 101 if front.partner is not None else 400
            size = front.trafficStats.outgoingOctetsWireLevel
        site.log(request, status=status, size=size)
        _log.info(
            "websocket {uri} to {url} closed: {why}",
            uri=request.uri.decode('latin-1'),
            url=self.backendURL(),
            why=self._why or "closed",
        )

    def abort(self):
        """
        Drop both connections at once (the shutdown deadline has passed).
        """
        for leg in (self._frontend, self._backend):
            leg.dropConnection(abort=True)

    def goAway(self):
        """
        The server is stopping: close both legs with 1001.
        """
        self._why = "server shutting down"
        code, text = SHUTDOWN
        self._closeBoth(code, text.encode("utf-8"))


class WebSocketProxyResource:
    """
    Relays websocket upgrades for one route to its backend.

    @ivar route: the L{proxyws.config.Route}.
    @ivar serverFactory: the Autobahn factory of the client legs.
    @ivar clientFactory: the Autobahn factory of the backend legs.
    """

    def __init__(self, reactor, route, tlsPolicy=None):
        """
        @param reactor: the reactor (clock and TCP).
        @param route: the L{proxyws.config.Route}.
        @param tlsPolicy: see L{proxyws.pool.backendEndpoint}.
        """
        self.reactor = reactor
        self.route = route
        self.tlsPolicy = tlsPolicy
        options = dict(
            echoCloseCodeReason=True,
            openHandshakeTimeout=0,
            closeHandshakeTimeout=1,
            maxMessagePayloadSize=route.maxMessageSize,
            autoPingInterval=route.wsPingInterval,
            autoPingTimeout=route.wsPingTimeout if route.wsPingInterval else 0,
            failByDrop=False,
        )
        self.serverFactory = WebSocketServerFactory(reactor=reactor)
        self.serverFactory.protocol = FrontendProtocol
        self.serverFactory.setProtocolOptions(**options)
        self.serverFactory._batched_timer = _ReactorTimer(reactor)
        backend = route.backend
        self.clientFactory = WebSocketClientFactory(
            url=backend.origin(backend.wsScheme).decode("ascii") + "/", reactor=reactor
        )
        self.clientFactory.protocol = BackendProtocol
        self.clientFactory.setProtocolOptions(**options)
        self.clientFactory._batched_timer = _ReactorTimer(reactor)

    def proxy(self, request, target):
        """
        Relay the websocket upgrade C{request}.

        @param target: the backend request target (path and query).
        """
        origin = request.requestHeaders.getRawHeaders(b"Origin")
        if not originAllowed(self.route.allowedOrigins, origin[0] if origin else None):
            _log.info(
                "websocket {uri}: Origin {origin} not allowed",
                uri=request.uri.decode('latin-1'),
                origin=origin[0] if origin else None,
            )
            errorPage(request, Forbidden("this Origin may not open websockets here"))
            return NOT_DONE_YET
        version = request.requestHeaders.getRawHeaders(b"Sec-WebSocket-Version")
        key = request.requestHeaders.getRawHeaders(b"Sec-WebSocket-Key")
        if request.method != b"GET" or not key or version != [b"13"]:
            errorPage(request, BadRequest("not a valid websocket version 13 handshake"))
            return NOT_DONE_YET
        Relay(self, request, target).start()
        return NOT_DONE_YET
