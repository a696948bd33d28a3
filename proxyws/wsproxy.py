"""
Websocket upgrades: the two opening handshakes, then the relay.

A route's L{WebSocketRouteHandler} takes a client's upgrade request once it
is routed and admitted.  The backend decides the handshake:

  1. the client's request is checked (RFC 6455 4.2.1) and held; what the
     client sends meanwhile (its first frames) waits in its channel;
  2. the backend connection is opened, and Autobahn's client protocol
     sends the client's path, query, subprotocols, compression offers and
     end-to-end headers;
  3. the backend's answer is read by the head codec (L{proxyws.heads}): an
     interim 1xx is skipped, a refusal (401, 403, 404...) is relayed to
     the client as it stands, garbage is a 502; a 101's compression answer
     is checked by L{proxyws.wscompress} and the rest of it by Autobahn
     (the protocols of both handshakes are in L{proxyws.wshandshake});
  4. Autobahn's server protocol answers the client's handshake with the
     backend's subprotocol, compression answer and cookies;
  5. the two connections go to a L{proxyws.wsrelay.Relay}, which relays
     frames as they are.  Autobahn has no part after the handshakes.
"""

import base64
import binascii

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketServerFactory
from autobahn.websocket.types import ConnectingRequest
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from . import wscompress
from .errors import BadGateway, BadRequest, BadResponse, Forbidden, GatewayTimeout, errorPage
from .httpproxy import backendRequestHeaders, connectError, countBackendError, relayedFields
from .interfaces import IRouteHandler
from .logs import ProxyLogger
from .pool import backendEndpoint
from .routing import hostMatches, hostOfHeader, urlHost
from .timers import Deadline
from .wshandshake import BackendConnector, BackendHandshake, ClientHandshake
from .wsrelay import Relay

# Request headers that the Autobahn client writes itself, from the values
# the handshake gives it; the client's own are not copied.
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

# Fields of the backend's 101 that are the handshake itself: the proxy
# checks them, and Autobahn writes the client's.  The rest (Set-Cookie,
# Server, ...) pass on.
_ANSWER_HANDSHAKE_FIELDS = frozenset(
    [
        b"upgrade",
        b"connection",
        b"sec-websocket-accept",
        b"sec-websocket-protocol",
        b"sec-websocket-extensions",
        b"content-length",
    ]
)

# Autobahn's own timers are all off: the proxy times the handshake itself
# and Autobahn sees no frame.
_OPTIONS = dict(
    openHandshakeTimeout=0,
    closeHandshakeTimeout=0,
    autoPingInterval=0,
    failByDrop=False,
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


def handshakeProblem(request):
    """
    What is wrong with a client's websocket opening handshake (RFC 6455
    4.2.1), checked before any backend is contacted.

    @return: L{None}, or the L{proxyws.errors.ResponseError} to answer.
    """
    headers = request.requestHeaders
    if request.method != b"GET" or request.clientproto != b"HTTP/1.1":
        return BadRequest("a websocket handshake is a GET over HTTP/1.1")
    key = headers.getRawHeaders(b"Sec-WebSocket-Key") or ()
    if headers.getRawHeaders(b"Sec-WebSocket-Version") != [b"13"] or len(key) != 1:
        return BadRequest("not a valid websocket version 13 handshake")
    try:
        if len(base64.b64decode(key[0], validate=True)) != 16:
            raise ValueError(key[0])
    except (binascii.Error, ValueError):
        return BadRequest("Sec-WebSocket-Key is not 16 bytes in base64")
    host = headers.getRawHeaders(b"Host") or ()
    if len(host) != 1 or b"#" in request.uri:
        return BadRequest("a websocket handshake needs one Host and no fragment")
    protocols = clientProtocols(request)
    if len(set(protocols)) != len(protocols):
        return BadRequest("a subprotocol is offered twice")
    return None


def clientProtocols(request):
    """
    @return: the subprotocols the client offers, in its order (text).
    """
    values = request.requestHeaders.getRawHeaders(b"Sec-WebSocket-Protocol") or ()
    return [
        token.strip().decode("latin-1")
        for value in values
        for token in value.split(b",")
        if token.strip()
    ]


def _splitHost(value, defaultPort):
    """
    Split a C{Host} header value into name and port.

    @return: C{(name, port)}; IPv6 names keep their brackets.
    """
    name, sep, port = value.rpartition(":")
    if sep and port.isdigit() and (not name.startswith("[") or name.endswith("]")):
        return name, int(port)
    return value, defaultPort


@implementer(IRouteHandler)
class WebSocketRouteHandler:
    """
    Relays the websocket upgrades of one route to its backend.

    @ivar route: the L{proxyws.values.Route}.
    @ivar serverFactory: the Autobahn factory of the client-side handshakes.
    @ivar clientFactory: the Autobahn factory of the backend-side handshakes.
    @ivar messages: the route's L{proxyws.wsmessages.WebSocketFilters}
        (plugins), or L{None}: frames relay as they are.
    """

    messages = None

    def __init__(self, reactor, route, tlsPolicy=None):
        """
        @param reactor: the reactor (clock and TCP).
        @param route: the L{proxyws.values.Route}.
        @param tlsPolicy: see L{proxyws.pool.backendEndpoint}.
        """
        self.reactor = reactor
        self.route = route
        self.tlsPolicy = tlsPolicy
        self.serverFactory = WebSocketServerFactory(server=None, reactor=reactor)
        self.serverFactory.protocol = ClientHandshake
        self.serverFactory.setProtocolOptions(**_OPTIONS)
        backend = route.backend
        self.clientFactory = WebSocketClientFactory(
            url=backend.origin(backend.wsScheme).decode("ascii") + "/", reactor=reactor
        )
        self.clientFactory.protocol = BackendHandshake
        self.clientFactory.setProtocolOptions(**_OPTIONS)

    def proxy(self, request, target, body):
        """
        Relay the websocket upgrade C{request}.

        @param target: the backend request target (path and query).
        @param body: the request body, if any (an upgrade has none).
        @return: L{NOT_DONE_YET}.
        """
        origin = request.requestHeaders.getRawHeaders(b"Origin")
        if not originAllowed(self.route.allowedOrigins, origin[0] if origin else None):
            _log.info(
                "websocket {uri}: Origin {origin} not allowed",
                uri=request.uri.decode("latin-1"),
                origin=origin[0] if origin else None,
            )
            errorPage(request, Forbidden("this Origin may not open websockets here"))
            return NOT_DONE_YET
        problem = handshakeProblem(request)
        if problem is not None or body is not None:
            if body is not None:
                body.stopProducing()
            errorPage(request, problem or BadRequest("a websocket handshake has no body"))
            return NOT_DONE_YET
        upgrade = self.newUpgrade(request, target)
        if upgrade is not None:
            upgrade.start()
        return NOT_DONE_YET

    def newUpgrade(self, request, target):
        """
        @return: the L{Upgrade} of a checked upgrade request, or L{None}
            when the request is answered already.
        """
        return Upgrade(self, request, target)


class Upgrade:
    """
    One websocket upgrade, from the client's request to the relay.

    States, each entered by the method named:
      - connecting (L{start}): opening the backend connection;
      - handshaking (L{backendConnected}): the backend has the request and
        C{response_timeout} to answer it;
      - refusing (L{backendRefused}): the backend answered something else
        than 101, whose body is being read to relay it;
      - answering (L{backendOpen}): the backend accepted; Autobahn answers
        the client's handshake;
      - relaying (L{clientOpen}): the L{Relay} has both connections;
      - failed (L{_fail}): the client got an error page.
    """

    # The affinity cookie of an upstream, which the backend never sees.
    _strippedCookie = None

    def __init__(self, handler, request, target):
        self._handler = handler
        self._route = handler.route
        self._backend = handler.route.backend
        self._reactor = handler.reactor
        self.request = request
        self._target = target
        self._offers = []
        self._socket = None
        self._connecting = None
        self._deadline = None
        self._answer = None
        self._deflate = None
        self._done = False

    def start(self):
        """
        Hold what the client sends next, and connect to the backend.
        """
        route = self._route
        request = self.request
        _log.debug(
            "websocket {uri}: serving URL {url}",
            uri=request.uri.decode("latin-1"),
            url=self.backendURL(),
        )
        request.channel.holdForUpgrade()
        request.whenGone = self._clientGone
        if route.compression:
            self._offers = wscompress.clientOffers(
                request.requestHeaders.getRawHeaders(b"Sec-WebSocket-Extensions")
            )
        self._connect()

    def _connect(self):
        """
        Open the backend connection.
        """
        endpoint = backendEndpoint(
            self._reactor, self._backend, self._route.connectTimeout, self._handler.tlsPolicy
        )
        self._connecting = endpoint.connect(BackendConnector(self, self._handler.clientFactory))
        self._connecting.addErrback(self._connectFailed)

    def backendURL(self):
        """
        @return: the backend URL this websocket is relayed to, as text.
        """
        backend = self._backend
        return (backend.origin(backend.wsScheme) + self._target).decode("ascii", "replace")

    def _connectFailed(self, reason):
        self._connecting = None
        if not self._done:
            self._fail(connectError(reason, self._backend.host), reason.getErrorMessage())

    def _clientGone(self, reason):
        """
        The client went away before its websocket opened.
        """
        self._done = True
        self._stopDeadline()
        if self._socket is not None:
            self._socket.transport.abortConnection()
        elif self._connecting is not None:
            self._connecting.cancel()

    def backendConnected(self, socket):
        """
        The backend connection is up; its handshake has C{response_timeout}.
        """
        self._socket = socket
        self._deadline = Deadline(self._reactor)
        self._deadline.start(self._route.responseTimeout, self._timedOut)

    def _timedOut(self):
        self._fail(
            GatewayTimeout("the backend did not answer the websocket handshake in time", "response_timeout"),
            "handshake timeout",
        )

    def _stopDeadline(self):
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def backendRequest(self):
        """
        @return: the C{ConnectingRequest} the backend leg sends: the
            client's path, query, subprotocols and end-to-end headers, and
            its compression offers.
        """
        request = self.request
        route = self._route
        headers = request.requestHeaders
        backend = self._backend
        forwarded = backendRequestHeaders(
            request, route, _HANDSHAKE_HEADERS, backend, self._strippedCookie
        )
        hostName, port = urlHost(backend.host), backend.port
        host = headers.getRawHeaders(b"Host")
        if route.preserveHost and host:
            hostName, port = _splitHost(
                host[0].decode("latin-1"), 443 if request.scheme == b"https" else 80
            )
        fields = {
            name.decode("latin-1"): (b"; " if name == b"Cookie" else b", ")
            .join(values)
            .decode("latin-1")
            for name, values in forwarded[1:]
        }
        offers = wscompress.offerHeader(self._offers)
        if offers is not None:
            fields["Sec-WebSocket-Extensions"] = offers.decode("latin-1")
        agent = headers.getRawHeaders(b"User-Agent")
        origin = headers.getRawHeaders(b"Origin")
        return ConnectingRequest(
            host=hostName,
            port=port,
            resource=self._target.decode("latin-1"),
            headers=fields,
            useragent=agent[0].decode("latin-1") if agent else "",
            origin=origin[0].decode("latin-1") if origin else None,
            protocols=clientProtocols(request),
        )

    def backendAnswered(self, head):
        """
        The backend answered 101: check what only the proxy can check (the
        subprotocol is one the client offered, the compression answer fits
        the offers), and remember what the client should see.

        @param head: the backend's L{proxyws.heads.ResponseHead}.
        @return: the fields to give Autobahn to check (the 101 less its
            subprotocol and extension fields, which the proxy checked).
        @raise BadResponse: when the answer cannot be relayed.
        """
        protocols = [v for n, v in head.fields if n.lower() == b"sec-websocket-protocol"]
        if len(protocols) > 1 or (
            protocols and protocols[0].decode("latin-1") not in clientProtocols(self.request)
        ):
            raise BadResponse("the backend chose a subprotocol the client did not offer")
        extensions = [v for n, v in head.fields if n.lower() == b"sec-websocket-extensions"]
        if not self._offers and extensions:
            raise BadResponse("the backend accepted an extension it was not offered")
        answer = wscompress.acceptedAnswer(extensions, self._offers)
        relayed = self._relayedFields(head.fields)
        extra = {}
        for name, value in relayed:
            if name.lower() not in _ANSWER_HANDSHAKE_FIELDS:
                extra.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
        if answer is not None:
            extra["Sec-WebSocket-Extensions"] = [answer.text.decode("latin-1")]
        self._deflate = answer
        self._answer = (protocols[0].decode("latin-1") if protocols else None, extra)
        return [
            (n, v)
            for n, v in head.fields
            if n.lower() not in (b"sec-websocket-protocol", b"sec-websocket-extensions")
        ]

    def backendRefused(self, head, body):
        """
        The backend answered the upgrade with something else than 101: the
        client gets that answer.
        """
        self._done = True
        self._stopDeadline()
        request = self.request
        self._socket.transport.abortConnection()
        if request.channel is None:
            return
        request.channel.releaseHeld()
        _log.info(
            "websocket {uri}: backend {url} refused the upgrade: {code}",
            uri=request.uri.decode("latin-1"),
            url=self.backendURL(),
            code=head.code,
        )
        request.respond(
            head.code, head.phrase, self._relayedFields(head.fields), len(body)
        )
        request.write(body)
        request.finish()

    def _relayedFields(self, fields):
        """
        @return: the fields of the backend's answer the client gets.
        """
        return relayedFields(self.request, self._route, fields, self._backend)

    def backendFailed(self, reason):
        """
        The backend's answer was not a websocket handshake the proxy can
        relay (or the connection closed before it came).
        """
        if isinstance(reason, BadResponse):
            self._fail(BadGateway("the backend answered the websocket handshake with garbage", "protocol"), str(reason))
        elif getattr(reason, "tlsFailed", False):
            self._fail(BadGateway("the TLS handshake with the backend failed", "tls"), str(reason))
        else:
            self._fail(
                BadGateway("the backend closed the connection during the websocket handshake", "broken"),
                reason or "connection closed",
            )

    def _fail(self, error, detail):
        if self._done:
            return
        self._done = True
        self._stopDeadline()
        if self._socket is not None:
            self._socket.transport.abortConnection()
        request = self.request
        if error.kind is not None:
            countBackendError(request, error.kind)
        _log.info(
            "websocket {uri}: {status} from {url}: {detail}",
            uri=request.uri.decode("latin-1"),
            status=error.status,
            url=self.backendURL(),
            detail=detail,
        )
        if request.channel is not None:
            request.channel.releaseHeld()
            errorPage(request, error)

    def backendOpen(self):
        """
        Autobahn accepted the backend's 101: answer the client's handshake
        (Autobahn's server protocol, on the client's connection).
        """
        self._stopDeadline()
        request = self.request
        channel = request.channel
        if channel is None or self._done:
            self._socket.transport.abortConnection()
            return
        front = self._handler.serverFactory.buildProtocol(request.getClientAddress())
        front.upgrade = self
        front.makeConnection(channel.transport)
        front.dataReceived(self._clientRequest())

    def _clientRequest(self):
        """
        The client's handshake as Autobahn's server protocol reads it: only
        what it checks (the proxy checked the same before).
        """
        request = self.request
        headers = request.requestHeaders
        lines = [request.method + b" " + request.uri + b" HTTP/1.1"]
        for name in (b"Host", b"Sec-WebSocket-Key", b"Sec-WebSocket-Version"):
            lines.append(name + b": " + headers.getRawHeaders(name)[0])
        lines += [b"Upgrade: websocket", b"Connection: Upgrade"]
        protocols = clientProtocols(request)
        if protocols:
            lines.append(b"Sec-WebSocket-Protocol: " + ", ".join(protocols).encode("latin-1"))
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def clientAnswer(self):
        """
        @return: what Autobahn answers the client's handshake with: the
            backend's subprotocol and the fields that pass on.
        """
        return self._answer

    def clientFailed(self, reason):
        """
        Autobahn refused the client's handshake (after the proxy's own
        checks passed: it should not happen).
        """
        self._fail(BadRequest("invalid websocket handshake: {}".format(reason)), reason)

    def clientOpen(self):
        """
        Both handshakes are done: hand the connections to a L{Relay}.
        """
        self._done = True
        self.request.whenGone = None
        request = self.request
        relay = Relay(self._route, self._reactor, request.channel.site, request)
        relay.backendURL = self.backendURL()
        self._relayOpening(relay)
        if self._handler.messages is not None:
            # The route's websocket filters see whole messages.
            relay.messages = self._handler.messages.session(relay, request, self._answer[0])
        socket, self._socket = self._socket, None
        self._connecting = None
        relay.start(request.channel, socket, socket.handshake.takeEarlyBytes(), self._deflate)
        socket.handshake = None

    def _relayOpening(self, relay):
        """
        The L{Relay} of this websocket is about to start.
        """
