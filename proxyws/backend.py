"""
A keep-alive HTTP/1.1 connection to a backend, carrying one exchange at a
time for L{proxyws.httpproxy}.

It writes the request head in one piece, streams the request body (with a
length, or chunked), and hands the response to its exchange as it arrives:
the head once, then the body piece by piece.  The body framing rules are RFC
9112 section 6.3 (L{proxyws.heads}); the body decoders are proxyws's own
(L{proxyws.bodies}), as strict with a backend as with a client.  Twisted's full
HTTP client (C{twisted.web._newclient}) does the same with a Deferred, a
parser and several wrapper objects per request; on the proxy's hot path
this one object per connection does it with plain method calls.
"""

from OpenSSL.SSL import Error as SSLError
from service_identity import VerificationError
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol

from .bodies import ChunkedDecoder, LengthDecoder
from .errors import BadResponse, BodyError, ConnectionLost
from .heads import CHUNKED, LENGTH, NONE, findHeadEnd, parseResponseHead, responseFraming
from .internals import writeNow

# Bytes read from a backend socket at once.
READ_SIZE = 262144

# Interim (1xx) responses taken before the final one; more is a backend
# that never answers, flooding the client.
MAX_INTERIM = 16


def _lost(responded, reason):
    """
    The L{ConnectionLost} for a connection that closed with C{reason}.
    """
    # OpenSSL refuses a certificate it cannot verify; service-identity
    # one issued for another name.
    tlsFailed = reason is not None and reason.check(SSLError, VerificationError) is not None
    return ConnectionLost(responded, reason, tlsFailed)


class _ChunkedWriter:
    """
    Writes a request body with chunked transfer coding.
    """

    def __init__(self, transport):
        self._transport = transport

    def write(self, data):
        if data:
            self._transport.writeSequence([b"%x\r\n" % len(data), data, b"\r\n"])

    def finish(self):
        self._transport.write(b"0\r\n\r\n")


class _PlainWriter:
    """
    Writes a request body whose length was declared.
    """

    def __init__(self, transport):
        self.write = transport.write

    def finish(self):
        pass


class BackendConnection(Protocol):
    """
    One connection to a backend.

    States:
      - idle: no exchange; the pool may lend it out;
      - head: a request was sent, reading the response head (and any
        interim 1xx heads before it);
      - body: relaying the response body;
      - closed: the connection is gone.

    The exchange it carries receives, in this order: C{interim(head)} for
    each 1xx response, C{responded(head, length, complete)} once, then
    C{bodyReceived(data)} any number of times and C{bodyEnded(error)}; or
    C{requestFailed(error, responded)} when no whole head came.

    @ivar reused: whether it has carried an exchange before.
    @ivar idle: whether it can take an exchange now.
    """

    pool = None
    backendKey = None
    # The connection's L{proxyws.timers.Deadline}, given by the pool: its
    # idle timeout in the pool, and its exchange's response and read
    # timeouts.
    deadline = None
    reused = False
    idle = True

    def __init__(self):
        self._exchange = None
        self._method = None
        self._buffer = b""
        self._decoder = None
        self._untilClose = False
        self._interim = 0
        self._persistent = True
        self._bodySent = True

    def connectionMade(self):
        """
        Disable Nagle: heads and bodies are written in pieces.
        """
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        # Large bodies: read up to 256 KiB a time rather than 64 KiB.
        if hasattr(self.transport, "bufferSize"):
            self.transport.bufferSize = READ_SIZE

    def send(self, exchange, method, head, body):
        """
        Send one request.

        @param exchange: receives the response (see the class docstring).
        @param method: the request's method (a C{HEAD} answer has no body).
        @param head: the request line and headers, ending with the blank
            line (C{Content-Length} or C{Transfer-Encoding} included).
        @param body: a L{proxyws.httpproxy.RequestBody}, or L{None}.
        """
        self.idle = False
        self._exchange = exchange
        self._method = method
        self._interim = 0
        writeNow(self.transport, head)
        if body is not None:
            self._bodySent = False
            chunked = body.length.__class__ is not int
            writer = _ChunkedWriter(self.transport) if chunked else _PlainWriter(self.transport)
            self.transport.registerProducer(body, True)
            body.startProducing(writer).addBoth(self._requestBodySent, writer)

    def _requestBodySent(self, result, writer):
        if self.transport is None or not self.transport.connected:
            return
        self.transport.unregisterProducer()
        writer.finish()
        self._bodySent = True
        if self._exchange is None and self.idle is False and self._decoder is None:
            self._release()

    def dataReceived(self, data):
        """
        Bytes from the backend: the head, then the body.
        """
        if self._decoder is not None:
            try:
                self._decoder.dataReceived(data)
            except BodyError as e:
                self._brokenBody(BadResponse("invalid response body: " + e.detail))
            return
        if self._exchange is None:
            # Nothing was asked: the backend is not speaking HTTP/1.1.
            self.transport.abortConnection()
            return
        self._buffer += data
        try:
            self._readHead()
        except BadResponse as e:
            exchange, self._exchange = self._exchange, None
            self.transport.abortConnection()
            exchange.requestFailed(e, responded=True)

    def _readHead(self):
        while self._exchange is not None:
            end = findHeadEnd(self._buffer)
            if end < 0:
                return
            head = parseResponseHead(self._buffer[:end])
            self._buffer = self._buffer[end + 4 :]
            if head.code >= 200 or head.code == 101:
                self._startBody(head, responseFraming(head, self._method))
                return
            self._interim += 1
            if self._interim > MAX_INTERIM:
                raise BadResponse("more than {} interim responses".format(MAX_INTERIM))
            self._exchange.interim(head)

    def _startBody(self, head, framing):
        self._persistent = framing.persistent
        exchange = self._exchange
        if framing.kind is NONE:
            exchange.responded(head, framing.declared, True)
            self._bodyDone(b"")
            return
        length = framing.length
        if framing.kind is CHUNKED:
            decoder = ChunkedDecoder(exchange.bodyReceived, self._bodyDone)
        elif framing.kind is LENGTH:
            decoder = LengthDecoder(length, exchange.bodyReceived, self._bodyDone)
        else:
            # The body runs to the end of the connection.
            decoder = _UntilClose(exchange.bodyReceived)
        self._decoder = decoder
        exchange.responded(head, length, length is not None and len(self._buffer) >= length)
        rest, self._buffer = self._buffer, b""
        if rest and self._decoder is decoder:
            self.dataReceived(rest)
        elif length == 0:
            decoder.dataReceived(b"")

    def _bodyDone(self, rest):
        """
        The response body is complete.
        """
        exchange, self._exchange = self._exchange, None
        self._decoder = None
        if rest or self._buffer:
            self._persistent = False
        exchange.bodyEnded(None)
        if self.transport is not None and self.transport.connected:
            if self._bodySent:
                self._release()
            else:
                # The backend answered before it had the whole request body:
                # this connection cannot carry another request.
                self._persistent = False
                self.transport.loseConnection()

    def _brokenBody(self, error):
        exchange, self._exchange = self._exchange, None
        self._decoder = None
        self.transport.abortConnection()
        exchange.bodyEnded(error)

    def _release(self):
        self.reused = True
        self.idle = True
        # A client that read slowly may have left the socket paused: the
        # next exchange must find it reading.
        self.transport.resumeProducing()
        if self._persistent and self.pool is not None:
            self.pool.release(self)
        else:
            self.transport.loseConnection()

    def connectionLost(self, reason):
        """
        The connection closed: end or fail the exchange in progress.
        """
        if self.pool is not None:
            self.pool.lost(self)
        if self.deadline is not None:
            # Whoever started it last is done with it: let the reactor
            # forget it (and what its callback holds) now.
            self.deadline.cancel()
        self.idle = False
        exchange, self._exchange = self._exchange, None
        decoder, self._decoder = self._decoder, None
        if exchange is None:
            return
        if decoder.__class__ is _UntilClose and reason.check(ConnectionDone):
            # A body delimited by the close, closed cleanly: complete.
            exchange.bodyEnded(None)
        elif decoder is not None:
            # Cut short, or reset: the client must not take it as whole.
            exchange.bodyEnded(_lost(True, reason))
        else:
            responded = bool(self._buffer) or self._interim > 0
            exchange.requestFailed(_lost(responded, reason), responded=responded)


class _UntilClose:
    """
    A body with no length: everything until the connection closes.
    """

    def __init__(self, dataCallback):
        self.dataReceived = dataCallback
