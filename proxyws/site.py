"""
The front end: a twisted.web L{Site} whose requests stream their bodies.

Twisted's own L{Request} reads a whole request body into a file before it is
rendered.  L{ProxyRequest} instead is processed as soon as its head is in
(L{proxyws.channel.ProxyChannel} reads heads and bodies), and hands its body
on piece by piece (see L{proxyws.httpproxy.RequestBody}).

L{ProxySite} writes the access log with proxyws's own combined-format
formatter and knows its open connections and websockets, so that a graceful
stop can let requests in flight finish, close idle keep-alive connections
and close websockets with 1001.
"""

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.http import NO_BODY_CODES
from twisted.web.server import Request, Site

from .access import realClient
from .accesslog import formatCombined, requestLine
from .channel import ProxyChannel
from .errors import ServiceUnavailable, errorPage
from .framing import DEFAULT_LIMITS, HeadLimits, hasBody
from .heads import encodeResponseHead, mergeFields
from .httpproxy import RequestBody
from .internals import writeNow
from .metrics import NO_ROUTE

# What OPTIONS * (a question about the server itself) is answered with.
_SERVER_METHODS = b"GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"


class ProxyRequest(Request):
    """
    A request that is processed when its head is in, with a body that
    streams (when it has one).

    @ivar bodyLimit: the largest body its route takes (bytes), or L{None}.
    @ivar _body: the L{RequestBody} handed to the backend, if any.
    @ivar _bodyPending: the request has a body that is still arriving.
    @ivar _finishPending: the response is complete but the request body is
        not; the request finishes when the body is in.
    """

    content = None
    channel = None
    received = None
    remoteUser = None
    bodyLimit = None
    # The length the body declares (Content-Length), or None.
    declaredLength = None
    # The host the request is for (its Host value), or None.
    hostHeader = None
    # Called with the reason when the client leaves before the response is
    # complete (notifyFinish without a Deferred, for the proxy's hot path).
    whenGone = None
    # The RouteMatch the resource found, and the RouteMetrics the request
    # counts on (None without metrics).
    routeMatch = None
    routeMetrics = None
    _body = None
    _bodyPending = False
    _finishPending = False
    _expectContinue = False
    # The backend's fields as the client gets them, and the body length,
    # handed over once by respond().
    _relayed = ()
    _responseLength = None

    def headReceived(self, head):
        """
        The head is in: set the request up from it and hand it to the
        site's resource.

        @param head: its L{proxyws.framing.RequestHead}.
        """
        add = self.requestHeaders.addRawHeader
        for name, value in head.fields:
            add(name, value)
        self.hostHeader = head.host
        if hasBody(head):
            self._bodyPending = True
            self._length = self.declaredLength = head.contentLength
            self._expectContinue = head.expectContinue
        firstOnConnection = self.channel.peerHost is None
        self._setRequestLine(head.method, head.uri, head.version)
        if firstOnConnection and not self.channel.site.admitClient(self.channel):
            self.channel.persistent = False
            errorPage(self, ServiceUnavailable("too many connections from this address"))
            return
        if head.uri == b"*":
            # OPTIONS * asks about the server itself, not a resource.
            self.setHeader(b"Allow", _SERVER_METHODS)
            self.setHeader(b"Content-Length", b"0")
            self.finish()
            return
        self.process()

    def parseCookies(self):
        """
        Do not parse the client's cookies: the proxy passes them on as they
        are (C{received_cookies} stays empty).
        """

    def takeBody(self):
        """
        Take the request body to stream it somewhere; a client that asked
        to be told first (C{Expect: 100-continue}) is told now.

        @return: a L{RequestBody}, or L{None} when the request has no body.
        """
        if not self._bodyPending:
            return None
        if self._expectContinue:
            self._expectContinue = False
            writeNow(self.channel.transport, encodeResponseHead(b"HTTP/1.1", 100, b"Continue", ()))
        self._body = RequestBody(self.channel, self._length)
        return self._body

    def handleContentChunk(self, data):
        """
        A piece of the body; dropped if nobody took the body.
        """
        if self._body is not None:
            self._body.dataReceived(data)

    def bodyComplete(self):
        """
        The whole body is in: tell its taker, and finish a response that
        waited for it.
        """
        self._bodyPending = False
        if self._body is not None:
            self._body.bodyComplete()
        if self._finishPending:
            Request.finish(self)

    def refuse(self, error):
        """
        The body is not framed as it must be, or is over its limit: stop
        the backend request, answer with C{error}'s status, and close the
        connection after the answer (the rest of the body is not read).

        @param error: a L{proxyws.errors.ResponseError}.
        """
        self._bodyPending = False
        self.channel.persistent = False
        whenGone, self.whenGone = self.whenGone, None
        if whenGone is not None:
            whenGone(Failure(error))
        if self._body is not None:
            self._body.stopProducing()
        errorPage(self, error)

    def _setRequestLine(self, command, path, version):
        channel = self.channel
        # Apache's %t is when the request arrived, not when it was logged.
        self.received = channel.site.reactor.seconds()
        self.scheme = channel.scheme
        if channel.peerHost is None:
            channel.notePeer()
        self.peerHost = channel.peerHost
        self.clientHost = channel.peerHost
        if channel.trusted:
            self.clientHost = realClient(
                self.requestHeaders.getRawHeaders(b"X-Forwarded-For"),
                channel.peerHost,
                channel.site.trustedProxies,
            )
        self.localPort = channel.localPort
        self.method = command
        self.uri = path
        self.clientproto = version
        self.path = path.partition(b"?")[0]
        self.args = {}

    def respond(self, code, phrase, fields, length, now=True):
        """
        Start the response with a backend's status and fields.

        The head is built once, by L{write}: these fields in their order,
        less any the proxy sets itself in C{responseHeaders} (such as HSTS),
        then the proxy's own, then the framing.

        @param fields: the backend's C{(name, value)} fields as the client
            gets them (see L{proxyws.headers.responseFields}).
        @param length: the body length, or L{None} when not known.
        @param now: send the head now; else it goes with the first body
            bytes.
        """
        self.setResponseCode(code, phrase)
        self._relayed = fields
        self._responseLength = length
        if now:
            self.write(b"")

    def _head(self):
        """
        The response head: the relayed fields and the proxy's own, framed
        with the length when it is known, else chunked (HTTP/1.1) or by
        closing the connection (HTTP/1.0).
        """
        code = self.code
        channel = self.channel
        if self._bodyPending and self._expectContinue:
            # Answered before the client was told to send its body: it may
            # never come, and is not waited for.
            channel.persistent = False
        fields = mergeFields(self._relayed, list(self.responseHeaders.getAllRawHeaders()))
        if not channel.persistent and self.clientproto == b"HTTP/1.1":
            fields.append((b"Connection", b"close"))
        length = self._responseLength
        if length is not None and code not in NO_BODY_CODES:
            fields.append((b"Content-Length", b"%d" % length))
        elif (
            self.clientproto == b"HTTP/1.1"
            and length is None
            and self.method != b"HEAD"
            and code not in NO_BODY_CODES
            and not self.responseHeaders.hasHeader(b"Content-Length")
        ):
            fields.append((b"Transfer-Encoding", b"chunked"))
            self.chunked = 1
        return encodeResponseHead(self.clientproto, code, self.code_message, fields)

    def write(self, data):
        """
        Write response bytes; the first write sends the head with them, in
        one piece.
        """
        if self.finished:
            raise RuntimeError("Request.write called on a request after Request.finish was called.")
        channel = self.channel
        if channel is None:
            return  # the client left: nothing more to send
        head = b""
        if not self.startedWriting:
            self.startedWriting = 1
            head = self._head()
            if self.method == b"HEAD" or self.code in NO_BODY_CODES:
                self.write = _discard
                writeNow(channel.transport, head)
                return
        if data:
            self.sentLength += len(data)
            if self.chunked:
                data = b"%x\r\n%s\r\n" % (len(data), data)
        if head or data:
            writeNow(channel.transport, head + data)

    def connectionLost(self, reason):
        """
        The connection ended before the response did: tell L{whenGone},
        and write the request's access-log line, which C{finish} will not:
        499 when nothing was sent yet (the client left, as nginx logs it),
        else the status sent and the bytes that went out.
        """
        channel = self.channel
        Request.connectionLost(self, reason)
        whenGone, self.whenGone = self.whenGone, None
        if whenGone is not None:
            whenGone(reason)
        if not self.finished and self.received is not None and channel is not None:
            channel.site.log(self, status=self.code if self.startedWriting else 499)

    def finish(self):
        """
        Finish the response, once the request body is all in; a client told
        nothing yet about a body it means to send (C{Expect: 100-continue})
        is not waited for: the connection closes after the response.
        """
        if self._bodyPending and self._expectContinue:
            self._bodyPending = False
        if self._bodyPending:
            self._finishPending = True
        else:
            Request.finish(self)

    def process(self):
        """
        Hand the request to the site's root resource, without Twisted's
        resource traversal or default headers.
        """
        self.site = self.channel.site
        self.site.resource.render(self)


def _discard(data):
    """
    The C{write} of a response that has no body (HEAD, 204, 304).
    """


class ProxySite(Site):
    """
    The site every listener serves.

    @ivar accessLog: an C{IAccessLog} receiving one line per request.
    """

    requestFactory = ProxyRequest
    protocol = ProxyChannel
    noisy = False

    # What a client may send, and how long it may take (from [server]).
    headLimits = DEFAULT_LIMITS
    headTimeout = 60.0
    bodyTimeout = 60.0
    perClientLimit = 0
    # The server's proxyws.metrics.Metrics, and the table of the routes
    # added through the API (their last activity), when there are.
    metrics = None
    apiRoutes = None
    # Seconds each websocket opened from now on may stay open, or 0: the
    # [server] max_websocket_lifetime in force when it opened.
    webSocketLifetime = 0.0

    def __init__(
        self, resource, accessLog, reactor, timeout, listener=None, trustedProxies=(), server=None
    ):
        """
        @param resource: the root resource.
        @param accessLog: where access-log lines go.
        @param reactor: the reactor (clock).
        @param timeout: seconds an idle client connection is kept.
        @param listener: the L{proxyws.config.Listener} served, if any.
        @param trustedProxies: networks whose X-Forwarded-For is believed.
        @param server: the L{proxyws.values.ServerSettings} whose limits
            clients are held to, or L{None} for the defaults.
        """
        Site.__init__(self, resource, reactor=reactor, timeout=timeout)
        self.accessLog = accessLog
        self.listener = listener
        self.trustedProxies = trustedProxies
        if server is not None:
            self.configure(server)
        # The number of the config in force (a reload adds one), noted on
        # each connection, so that the status can tell those held past a
        # reload.
        self.generation = 0
        self._channels = set()
        self._relays = set()
        self._perClient = {}
        self._drained = None

    def configure(self, server):
        """
        Take the client limits and timeouts of a config's C{[server]}.
        """
        self.timeOut = server.clientTimeout
        self.trustedProxies = server.trustedProxies
        self.headTimeout = server.headTimeout
        self.bodyTimeout = server.bodyTimeout
        self.perClientLimit = server.maxConnectionsPerClient
        self.headLimits = HeadLimits(
            requestLine=server.maxRequestLine,
            fieldLine=server.maxHeaderLine,
            fieldsSize=server.maxHeaderSize,
            fieldCount=server.maxHeaders,
        )
        self.webSocketLifetime = server.maxWebsocketLifetime

    # The listening port, when it has a limit of open connections
    # (C{[[listen]] max_connections}): it stops accepting at the limit.
    port = None
    _accepting = True

    def buildProtocol(self, addr):
        """
        Build a L{ProxyChannel} and remember it; at the listener's limit of
        open connections, stop accepting more (they wait in the kernel's
        queue) until some close.
        """
        channel = Site.buildProtocol(self, addr)
        channel.generation = self.generation
        self._channels.add(channel)
        self._checkLimit()
        return channel

    def _open(self):
        return len(self._channels) + len(self._relays)

    def _checkLimit(self):
        limit = self.listener.maxConnections if self.listener is not None else 0
        if not limit or self.port is None:
            return
        if self._accepting and self._open() >= limit:
            self._accepting = False
            self.port.stopReading()
        elif not self._accepting and self._open() < limit:
            self._accepting = True
            self.port.startReading()

    def admitClient(self, channel):
        """
        Count C{channel}'s client against C{max_connections_per_client}.

        @return: whether it may be served.
        """
        limit = self.perClientLimit
        if not limit:
            return True
        counts = self._perClient
        address = channel.peerHost
        counts[address] = counts.get(address, 0) + 1
        channel.counted = address
        return counts[address] <= limit

    def _uncount(self, connection):
        address = getattr(connection, "counted", None)
        if address is not None:
            connection.counted = None
            left = self._perClient.get(address, 1) - 1
            if left > 0:
                self._perClient[address] = left
            else:
                self._perClient.pop(address, None)

    def channelGenerations(self):
        """
        @return: C{(channel, generation)} of every open HTTP connection.
        """
        return [(channel, channel.generation) for channel in self._channels]

    def relays(self):
        """
        @return: the open websockets' L{proxyws.wsrelay.Relay}s.
        """
        return list(self._relays)

    def channelClosed(self, channel):
        """
        C{channel}'s connection is closed.
        """
        self._channels.discard(channel)
        self._uncount(channel)
        self._checkLimit()
        self._checkDrained()

    def webSocketOpened(self, relay, channel):
        """
        C{channel} became the client leg of the websocket C{relay}.
        """
        self._channels.discard(channel)
        self._relays.add(relay)
        relay.generation = channel.generation
        relay.counted, channel.counted = getattr(channel, "counted", None), None
        if self.webSocketLifetime:
            relay.limitLifetime(self.webSocketLifetime)
        if self._drained is not None:
            relay.goAway()

    def webSocketClosed(self, relay):
        """
        Both legs of C{relay} are closed.
        """
        self._relays.discard(relay)
        self._uncount(relay)
        self._checkLimit()
        self._checkDrained()

    def webSocketActivity(self, request):
        """
        What the websocket of C{request} calls when either peer sends
        something.

        @return: a callable recording the last activity of the API route
            it took, or L{None} for a config route.
        """
        match = request.routeMatch
        table = self.apiRoutes
        if match is None or match.api is None or table is None:
            return None
        prefix, seconds = match.api.prefix, self.reactor.seconds

        def touch():
            # APIRouteTable.touch, without its call: this runs for every
            # read of either peer.
            table.recent[prefix] = seconds()

        return touch

    def _checkDrained(self):
        if self._drained is not None and not self._channels and not self._relays:
            drained, self._drained = self._drained, None
            drained.callback(None)

    def log(self, request, status=None, size=None):
        """
        Write the access-log line of a finished request.

        @param status: the status to log instead of the request's (a
            websocket logs 101 when it closes).
        @param size: the bytes sent to log instead of the body's length.
        """
        code = request.code if status is None else status
        # Without [admin] there is nothing to count or record.
        if (self.metrics is not None or self.apiRoutes is not None) and status != 101:
            self._requestDone(request, code)
        headers = request.requestHeaders
        referer = headers.getRawHeaders(b"Referer")
        agent = headers.getRawHeaders(b"User-Agent")
        self.accessLog.write(
            formatCombined(
                request.clientHost,
                None,
                request.remoteUser,
                request.received,
                requestLine(request.method, request.uri, request.clientproto),
                code,
                request.sentLength if size is None else size,
                referer[0] if referer else None,
                agent[0] if agent else None,
            )
        )

    def _requestDone(self, request, code):
        """
        Count a finished HTTP request (a websocket is counted when it
        opens and closes): on its route's metrics, and as activity of the
        API route it took.
        """
        metrics = self.metrics
        if metrics is not None:
            routeMetrics = request.routeMetrics or metrics.forRoute(NO_ROUTE)
            received = request.received
            routeMetrics.requestDone(
                code, self.reactor.seconds() - received if received is not None else 0.0)
        match = request.routeMatch
        if match is not None and match.api is not None and self.apiRoutes is not None:
            self.apiRoutes.requestDone(match.api.prefix, code, self.reactor.seconds())

    def refused(self, channel, status, size):
        """
        Write the access-log line of a request whose head was refused (its
        request line is not known for sure: C{"-"}, as Apache writes it).
        """
        peer = channel.getPeer()
        if self.metrics is not None:
            self.metrics.forRoute(NO_ROUTE).requestDone(status, 0.0)
        self.accessLog.write(
            formatCombined(
                getattr(peer, "host", "-"),
                None,
                None,
                self.reactor.seconds(),
                b"-",
                status,
                size,
                None,
                None,
            )
        )

    def drain(self):
        """
        Stop keeping connections alive: close the idle ones now and each busy
        one when its response is complete.

        @return: a L{Deferred} that fires when every connection is closed.
        """
        drained = self._drained = Deferred()
        for channel in list(self._channels):
            channel.persistent = False
            if not channel.requests:
                channel.transport.loseConnection()
        for relay in list(self._relays):
            relay.goAway()
        self._checkDrained()
        return drained

    def abortAll(self):
        """
        Close every connection at once (the shutdown deadline has passed).
        """
        for channel in list(self._channels):
            channel.transport.abortConnection()
        for relay in list(self._relays):
            relay.abort()
