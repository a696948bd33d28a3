"""
The HTTP proxy path: one L{HTTPRouteHandler} per route, relaying each
request to its backend over a pooled HTTP/1.1 connection.

Bodies stream both ways and are never held whole: the request body is handed
to the backend connection as it arrives (L{RequestBody}), the response body
is written to the client as it arrives (L{_ResponseProducer}).  Each side's
transport is registered as a streaming producer on the other, so a slow
reader on either side pauses the socket on the other side.
"""

from twisted.internet import error as netError
from twisted.internet.defer import CancelledError, Deferred
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from . import headers as rules
from .affinity import withoutCookie
from .errors import BadGateway, GatewayTimeout, PluginFailed, errorPage
from .heads import encodeRequestHead, encodeResponseHead
from .interfaces import IRouteHandler
from .logs import ProxyLogger
from .resend import (
    CLOSED,
    CONNECT,
    INVALID,
    NEXT,
    SAME,
    STALE,
    TIMEOUT,
    TLS,
    failureKind,
    resendTo,
)
from .routing import urlHost

# What the client is told when a connection failed before the answer, and
# the kind of backend error the metrics count.
_REQUEST_FAILURES = {
    TLS: ("the TLS handshake with the backend failed", "tls"),
    STALE: ("the backend closed the connection without a response", "broken"),
    CLOSED: ("the backend closed the connection without a response", "broken"),
    INVALID: ("the backend sent an invalid response", "protocol"),
}

# Request headers the proxy does not pass on besides the hop-by-hop ones: it
# answers "Expect: 100-continue" itself, and the HTTP client writes the
# framing (Content-Length or chunked) of the body it sends.
_NOT_FORWARDED = frozenset([b"expect", b"content-length"])

# Methods whose requests are sent with "Content-Length: 0" when they have no
# body, as Twisted's own client does.
_BODY_EXPECTED = frozenset([b"POST", b"PUT", b"PATCH"])

_RESPONSE_TIMEOUT = "response timeout: the backend sent no response in time"
_READ_TIMEOUT = "read timeout: the backend stopped sending the response"
_SEND_TIMEOUT = "response timeout: the backend stopped reading the request body"

# Failures of a connection attempt, and what the client is told ({host}:
# the backend's host name, as the config has it).
_CONNECT_FAILURES = [
    (netError.TimeoutError, GatewayTimeout, "connect_timeout",
     "connect timeout: the backend did not accept the connection in time"),
    (netError.ConnectionRefusedError, BadGateway, "connect", "connection refused by the backend"),
    (netError.DNSLookupError, BadGateway, "connect",
     "the backend host name {host!r} could not be resolved"),
]

_log = ProxyLogger()


def _describe(reason):
    """
    A short text for a failure, unwrapping the lists of failures that
    Twisted's HTTP client wraps its errors in.
    """
    if isinstance(reason, Exception):
        return str(reason) or reason.__class__.__name__
    inner = getattr(reason.value, "reasons", None)
    if inner:
        return "; ".join(_describe(r) for r in inner)
    return reason.getErrorMessage() or reason.type.__name__


def connectError(reason, host):
    """
    The L{proxyws.errors.ResponseError} for a failed backend connection
    attempt.

    @param host: the host name (or address) of the backend, as text.
    """
    for failureType, errorType, kind, text in _CONNECT_FAILURES:
        if reason.check(failureType):
            return errorType(text.format(host=host), kind)
    return BadGateway(
        "cannot connect to the backend: {}".format(reason.getErrorMessage()), "connect"
    )


def countBackendError(request, kind):
    """
    Count a backend error on the metrics of C{request}'s route, when there
    are metrics.

    @param kind: a key of L{proxyws.metrics.BACKEND_ERROR_KINDS}.
    """
    metrics = getattr(request, "routeMetrics", None)
    if metrics is not None:
        metrics.backendError(kind)


@implementer(IBodyProducer)
class RequestBody:
    """
    The body of a client's request, produced to the backend as it arrives.

    Data that arrives before the backend connection is ready, or while the
    backend is not reading, is held here and the client's socket is paused,
    so at most one socket read is held at a time.

    @ivar length: the body length or C{UNKNOWN_LENGTH} (chunked).
    @ivar whenStalled: called with C{True} when the backend stops reading
        the body and with C{False} when it reads again, or L{None}.
    """

    whenStalled = None

    def __init__(self, channel, length):
        """
        @param channel: the client's connection: its C{pauseReading} and
            C{resumeReading} stop and start reading the body (see
            L{proxyws.channel.ProxyChannel.pauseReading}).
        @param length: the declared length, or L{None} for chunked.
        """
        self._channel = channel
        self.length = UNKNOWN_LENGTH if length is None else length
        self._consumer = None
        self._pending = []
        self._paused = False
        self._complete = False
        self._stopped = False
        self._finished = Deferred()
        self._sent = None

    def startProducing(self, consumer):
        """
        The backend connection is ready: send what has arrived.
        """
        self._consumer = consumer
        self._flush()
        return self._finished

    @property
    def sent(self):
        """
        Whether the whole body has been handed to the backend connection.
        """
        return self._finished.called

    def whenSent(self, callback):
        """
        Call C{callback()} once the whole body has been handed to the
        backend connection.
        """
        self._sent = callback
        if self._finished.called:
            callback()

    def _finish(self):
        self._finished.callback(None)
        if self._sent is not None:
            self._sent()

    def _flush(self):
        pending, self._pending = self._pending, []
        for data in pending:
            self._consumer.write(data)
        if self._complete:
            if not self._finished.called:
                self._finish()
        elif not self._paused:
            self._channel.resumeReading()

    def dataReceived(self, data):
        """
        A piece of the body from the client.
        """
        if self._stopped:
            return
        if self._consumer is None or self._paused:
            self._pending.append(data)
            self._channel.pauseReading(self._paused)
        else:
            self._consumer.write(data)

    def bodyComplete(self):
        """
        The client has sent the whole body.
        """
        self._complete = True
        if self._consumer is not None and not self._pending and not self._stopped:
            self._finish()
        # Nothing more of the body is to be read: the client is read again
        # (its next request, which the channel bounds, or its close), however
        # the body held it back: before the backend connection was made
        # (the client may leave while it waits), or by a backend that did
        # not take its last piece at once (the backend connection lets go of
        # a whole body and never resumes it).
        self._channel.resumeReading()

    def pauseProducing(self):
        """
        The backend is not reading: stop reading from the client, unless
        the body is whole.
        """
        self._paused = True
        if not self._complete:
            self._channel.pauseReading(True)
        if self.whenStalled is not None:
            self.whenStalled(True)

    def resumeProducing(self):
        """
        The backend reads again.
        """
        self._paused = False
        if self.whenStalled is not None:
            # Before the flush, which may finish the body and start the
            # wait for the answer.
            self.whenStalled(False)
        if self._consumer is not None:
            self._flush()

    def stopProducing(self):
        """
        The backend connection is gone: drop the rest of the body.
        """
        self._stopped = True
        self._pending = []
        self._channel.resumeReading()


class _ResponseProducer:
    """
    The backend connection as the producer of a response: a client that
    does not read pauses it, and the read timeout waits meanwhile.
    """

    def __init__(self, exchange, transport):
        self._exchange = exchange
        self._transport = transport

    def pauseProducing(self):
        """
        The client does not read: stop reading from the backend.
        """
        self._exchange.pauseTimer()
        self._transport.pauseProducing()

    def resumeProducing(self):
        """
        The client reads again.
        """
        self._exchange.resumeTimer()
        self._transport.resumeProducing()

    def stopProducing(self):
        """
        The client is gone.
        """
        self._transport.stopProducing()


class _Exchange:
    """
    One request relayed to a backend.

    States, each with the method that enters it:
      - connecting (L{start}): waiting for a pooled or new connection;
      - waiting (L{_connected}): request sent, waiting for the response head;
      - streaming (L{responded}): relaying the response body;
      - done (L{_done}): finished, failed or cancelled.

    A failure before any of the answer was relayed (L{_backendFailed})
    starts it over (L{start}) where L{proxyws.resend.RESEND} allows: on a new connection
    to the same backend, or to the next one (L{_nextBackend}: an upstream
    route's next member).

    @ivar request: the client's request.
    """

    # The affinity cookie of an upstream, which the backend never sees, and
    # the fields the answer carries besides the backend's (the cookie that
    # names its member).
    _strippedCookie = None
    _addedFields = None

    def __init__(self, reactor, pool, route, request, target, body):
        self._reactor = reactor
        self._pool = pool
        self._route = route
        self._backend = route.backend
        self.request = request
        self._target = target
        self._body = body
        self._pending = None
        self._connection = None
        self._timer = None
        self._timerPaused = False
        self._timeoutError = None
        self._finished = False

    def start(self, fresh=False):
        """
        Get a connection to the backend.
        """
        backend = self._backend
        if not fresh:
            connection = self._pool.takeIdle(backend)
            if connection is not None:
                self._connected(connection)
                return
        # No idle connection to take (or none wanted): a new one, or the
        # next one freed when the backend's connection limit is reached.
        self._pending = self._pool.connection(backend, self._route.connectTimeout, fresh=True)
        self._pending.addCallbacks(self._connected, self._connectFailed)

    def _connectFailed(self, reason):
        if not reason.check(CancelledError):
            self._backendFailed(CONNECT, connectError(reason, self._backend.host), reason)

    def _backendFailed(self, kind, error, reason):
        """
        The request failed before any of its answer was relayed: send it
        again where L{proxyws.resend.RESEND} allows, else answer
        C{error}.

        @param kind: how it failed (see L{failureKind}).
        @param error: the L{proxyws.errors.ResponseError} for the client.
        @param reason: what happened, for the log (or L{None}).
        """
        where = resendTo(kind, self.request.method, self._body is not None)
        if where is SAME or (where is NEXT and self._nextBackend()):
            if where is NEXT:
                # The member failed, though the request goes on to another:
                # its error counts (a stale connection sent again does not).
                countBackendError(self.request, error.kind)
            self._cancelTimer()
            self.start(fresh=where is SAME)
            return
        self._fail(error, reason)

    def _nextBackend(self):
        """
        Take another backend for the request, if there is one to try.

        @return: whether there is (a plain route has only its backend).
        """
        return False

    def _connected(self, connection):
        self._connection = connection
        if self._body is None:
            self._startResponseTimer()
        else:
            # The backend answers after the body: time it from the end, and
            # while the backend takes none of it.
            self._body.whenStalled = self._bodyStalled
            self._body.whenSent(self._startResponseTimer)
        connection.send(self, self.request.method, self._requestHead(), self._body)

    def _requestHead(self):
        request = self.request
        body = self._body
        framing = ()
        if body is not None:
            if body.length.__class__ is int:
                framing = ((b"Content-Length", b"%d" % body.length),)
            else:
                framing = ((b"Transfer-Encoding", b"chunked"),)
        elif request.method in _BODY_EXPECTED:
            framing = ((b"Content-Length", b"0"),)
        fields = backendRequestHeaders(
            request, self._route, _NOT_FORWARDED, self._backend, self._strippedCookie
        )
        return encodeRequestHead(request.method, self._target, fields, framing)

    def _startResponseTimer(self):
        if (
            not self._finished
            and self._timer is None
            and self._connection is not None
            and not self.request.startedWriting
        ):
            self._armTimer(self._route.responseTimeout, _RESPONSE_TIMEOUT)

    def _bodyStalled(self, stalled):
        """
        The backend stopped reading the request body (C{stalled}), or reads
        it again: before its answer starts, it has the response timeout to
        take more, or the client gets 504 (not the body timeout's 408: the
        client is not the one late).
        """
        if not stalled:
            if self._timer is not None and self._timerArguments[1] is _SEND_TIMEOUT:
                self._cancelTimer()
        elif self._timer is None and self._connection is not None and not self._finished:
            if not self.request.startedWriting:
                self._armTimer(self._route.responseTimeout, _SEND_TIMEOUT)

    def requestFailed(self, error, responded):
        """
        The connection failed before a whole response head came.

        @param error: what happened.
        @param responded: whether any of the response had arrived.
        """
        connection, self._connection = self._connection, None
        if self._finished:
            return
        timedOut = self._timeoutError is not None
        kind = failureKind(error, responded, connection.reused, timedOut)
        answer = self._timeoutError if timedOut else BadGateway(*_REQUEST_FAILURES[kind])
        self._backendFailed(kind, answer, error)

    def interim(self, head):
        """
        An interim (1xx) response came before the final one: an HTTP/1.1
        client gets it (RFC 9110 15.2: a proxy MUST forward it), an HTTP/1.0
        one does not, and C{100 Continue} is the proxy's own business with
        the client (it answers C{Expect} itself).

        @param head: its L{proxyws.heads.ResponseHead}.
        """
        request = self.request
        if (
            head.code == 100
            or request.clientproto != b"HTTP/1.1"
            or request.startedWriting
            or request.channel is None
        ):
            return
        fields = relayedFields(request, self._route, head.fields, self._backend)
        request.channel.write(encodeResponseHead(b"HTTP/1.1", head.code, head.phrase, fields))

    def responded(self, head, length, complete):
        """
        The response head: pass it on.

        @param head: the backend's L{proxyws.heads.ResponseHead}.
        @param length: the body length, or L{None} when it is not known
            (chunked, until the connection closes, no body).
        @param complete: whether the whole body is in hand and follows at
            once, so that the head can go out with it.
        """
        self._cancelTimer()
        request = self.request
        fields = relayedFields(request, self._route, head.fields, self._backend)
        if self._addedFields is not None:
            fields += self._addedFields
        if self.handler.responseFilter is not None:
            # The route's response filters (plugins) see the head first.
            try:
                fields = self.handler.responseFilter(request, head.code, head.phrase, fields)
            except PluginFailed as e:
                self._fail(e, None)
                # The body that follows in this read goes nowhere.
                self.request = _Discarded
                return
        # Send the head now unless the whole body follows in this call: a
        # stream (server-sent events, xhr-streaming) must reach the client
        # before its first event, and an answer without a body before the
        # end of an upload (the request finishes only then).
        request.respond(
            head.code, head.phrase, fields, length, now=not complete or self._body is not None
        )
        if complete:
            # The whole body follows in this same call: no read timeout to
            # run and nothing to pause (what the client's socket does not
            # take waits in its transport: one read of the backend at most).
            return
        self._armTimer(self._route.readTimeout, _READ_TIMEOUT)
        request.registerProducer(_ResponseProducer(self, self._connection.transport), True)

    def bodyReceived(self, data):
        """
        A piece of the response body.
        """
        if self._timer is not None:
            self._timer.restart(self._route.readTimeout)
        self.request.write(data)

    def bodyEnded(self, error):
        """
        The response body is complete (C{error} is L{None}), or broke off.
        """
        self._cancelTimer()
        if self._finished:
            return
        request = self.request
        if request.producer is not None:
            request.unregisterProducer()
        connection, self._connection = self._connection, None
        if error is None:
            self._done()
            body = self._body
            if body is not None and not body.sent:
                # Answered before the backend had the whole body: its
                # connection can carry nothing more, and a close would wait
                # for it to take what waits to be written to it, which a
                # backend that stopped reading never does (holding the
                # connection, one of backend_max_connections): cut it.  The
                # rest of the body is read and dropped, under the body
                # timeout, so that the answer can finish.
                connection.transport.abortConnection()
                body.stopProducing()
            request.finish()
            return
        _log.warn(
            "{method} {uri}: response from {backend} broke off: {reason}",
            method=request.method.decode("latin-1"),
            uri=request.uri.decode("latin-1"),
            backend=self._backend.url,
            reason=self._timeoutError.detail if self._timeoutError else str(error),
        )
        self._done()
        timedOut = self._timeoutError
        countBackendError(request, timedOut.kind if timedOut is not None else "broken")
        # The head is sent: the client can only learn of it by the
        # connection closing before the end of the body.
        request.channel.transport.abortConnection()

    def clientGone(self, reason):
        """
        The client disconnected: cancel the backend request.
        """
        if self._finished:
            return
        self._done()
        if self._pending is not None and not self._pending.called:
            self._pending.cancel()
        elif self._connection is not None:
            self._connection.transport.abortConnection()

    def pauseTimer(self):
        """
        The proxy stopped reading the backend: the read timeout waits.
        """
        if self._timer is not None and self._timer.due is not None:
            self._timer.stop()
            self._timer = None
            self._timerPaused = True

    def resumeTimer(self):
        """
        The proxy reads the backend again: the read timeout starts over.
        """
        if self._timerPaused and not self._finished and self._connection is not None:
            self._timerPaused = False
            self._armTimer(*self._timerArguments)

    def _armTimer(self, seconds, message):
        # The backend connection's deadline: it times the connection's idle
        # life in the pool too, so that a request starts no timer of its own.
        self._timerArguments = (seconds, message)
        self._timer = self._connection.deadline
        self._timer.start(seconds, self._timedOut, message)

    def _cancelTimer(self):
        if self._timer is not None:
            self._timer.stop()
        self._timer = None
        self._timerPaused = False

    def _timedOut(self, message):
        self._timer = None
        kind = "read_timeout" if self.request.startedWriting else "response_timeout"
        error = self._timeoutError = GatewayTimeout(message, kind)
        if self._connection is not None:
            self._connection.transport.abortConnection()
        if not self.request.startedWriting:
            self._backendFailed(TIMEOUT, error, None)

    def _fail(self, error, reason):
        if self._finished:
            return
        self._done()
        if self._connection is not None:
            self._connection.transport.abortConnection()
        if self._body is not None:
            # Read and drop the rest of the body so the answer can finish.
            self._body.stopProducing()
        request = self.request
        _log.info(
            "{method} {uri}: {status} from {backend}: {detail}",
            method=request.method.decode('latin-1'),
            uri=request.uri.decode('latin-1'),
            status=error.status,
            backend=self._backend.url,
            detail=_describe(reason) if reason is not None else error.detail,
        )
        if self._timeoutError is not None:
            error = self._timeoutError
        if error.kind is not None:
            countBackendError(request, error.kind)
        if not request.startedWriting and request.channel is not None:
            errorPage(request, error)

    def _done(self):
        self._finished = True
        self.handler.inFlight -= 1
        self._cancelTimer()
        # The request and the exchange refer to each other until here: let
        # reference counting free both once the response is out, rather
        # than the cycle collector later.
        self.request.whenGone = None


class _Discarded:
    """
    Where the body of a response a plugin failed on goes (nowhere).
    """

    whenGone = None

    @staticmethod
    def write(data):
        """
        Drop C{data}.
        """


def frontOrigin(request):
    """
    The scheme and host of the proxy as the client named it.

    @return: such as C{b"https://app.example.com:8443"}.
    """
    if request.hostHeader is not None:
        return request.scheme + b"://" + request.hostHeader
    address = urlHost(request.getHost().host.encode("ascii"))
    return request.scheme + b"://" + address + b":" + request.localPort


def relayedFields(request, route, fields, backend=None):
    """
    The fields of a backend's response that the client gets (see
    L{proxyws.headers.responseFields}), for C{request} on C{route}.

    @param backend: the L{proxyws.values.Backend} that answered (a member
        of the route's upstream), or L{None} for the route's own.
    """
    if backend is None:
        backend = route.backend
    return rules.responseFields(
        fields, backend.origin(backend.httpScheme), frontOrigin(request), route.reverse
    )


def backendRequestHeaders(
    request, route, excluded=_NOT_FORWARDED, backend=None, strippedCookie=None
):
    """
    The headers to send to the backend for C{request} on C{route}.

    @param excluded: lower-cased names of client headers not to copy.
    @param backend: the L{proxyws.values.Backend} the request goes to (a
        member of the route's upstream), or L{None} for the route's own.
    @param strippedCookie: the name (L{bytes}) of a cookie the backend must
        not see (an upstream's affinity cookie), or L{None}.
    """
    if backend is None:
        backend = route.backend
    items = list(request.requestHeaders.getAllRawHeaders())
    if strippedCookie is not None:
        items = withoutCookie(items, strippedCookie)
    added = ()
    subjectHeader = request.channel.subjectHeader
    if subjectHeader is not None:
        # The client may not set it itself.
        excluded = excluded | {subjectHeader[0].lower()}
        if subjectHeader[1] is not None:
            added = ((subjectHeader[0], [subjectHeader[1]]),)
    return rules.requestHeaders(
        items,
        clientAddress=request.peerHost.encode("ascii"),
        scheme=request.scheme,
        frontHost=request.hostHeader,
        frontPort=request.localPort,
        backendHost=backend.hostHeader,
        preserveHost=route.preserveHost,
        dropped=excluded,
        added=added,
    )


@implementer(IRouteHandler)
class HTTPRouteHandler:
    """
    Relays the plain HTTP requests of one route to its backend.

    @ivar route: the L{proxyws.values.Route}.
    @ivar responseFilter: the route's L{proxyws.filters.ResponseFilters},
        or L{None} (plugins).
    """

    responseFilter = None

    def __init__(self, reactor, pool, route):
        """
        @param reactor: the reactor (clock).
        @param pool: the L{proxyws.interfaces.IBackendPool}.
        @param route: the L{proxyws.values.Route}.
        """
        self._reactor = reactor
        self._pool = pool
        self.route = route
        self.inFlight = 0

    def proxy(self, request, target, body):
        """
        Relay C{request} to the backend.

        @param target: the backend request target (path and query).
        @param body: a L{RequestBody} when the request has a body, else
            L{None}.
        @return: L{NOT_DONE_YET}.
        """
        exchange = _Exchange(self._reactor, self._pool, self.route, request, target, body)
        exchange.handler = self
        self.inFlight += 1
        request.whenGone = exchange.clientGone
        exchange.start()
        return NOT_DONE_YET
