"""
A keep-alive HTTP/1.1 connection to a backend, carrying one exchange at a
time for L{proxyws.httpproxy}.

It writes the request head in one piece, streams the request body (with a
length, or chunked), and hands the response to its exchange as it arrives:
the head once, then the body piece by piece.  The body framing rules are RFC
9112 section 6.3; the body decoders are twisted.web's own.  Twisted's full
HTTP client (C{twisted.web._newclient}) does the same with a Deferred, a
parser and several wrapper objects per request; on the proxy's hot path
this one object per connection does it with plain method calls.
"""

import re

from OpenSSL.SSL import Error as SSLError
from service_identity import VerificationError
from twisted.internet.protocol import Protocol
from twisted.web.http import (
    _ChunkedTransferDecoder,
    _IdentityTransferDecoder,
    _MalformedChunkedDataError,
)

from .headers import FRAMING, TOKEN
from .writes import writeNow

# A response head larger than this is refused (nginx's default
# proxy_buffer_size is 4-8 KiB; large cookies need more).
MAX_HEAD = 65536

# Bytes read from a backend socket at once.
READ_SIZE = 262144

# RFC 9110 5.1 and 5.5: a field name is a token; no control bytes but tab
# in a status line or a field value.
_TOKEN = re.compile(TOKEN)
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

# A whole valid response head, checked in one pass; a head that does not
# match is parsed line by line to say what is wrong with it.
_VALID_HEAD = re.compile(
    rb"HTTP/1\.[0-9] [0-9]{3}(?: [^\x00-\x08\x0a-\x1f\x7f]*)?"
    rb"(?:\r\n" + TOKEN + rb":[^\x00-\x08\x0a-\x1f\x7f]*)*"
)

# Statuses whose responses never have a body (RFC 9110 6.4.1).
NO_BODY = frozenset([204, 304])


class BadResponse(Exception):
    """
    The backend's answer is not an HTTP/1.x response the proxy can relay.
    """


class ConnectionLost(Exception):
    """
    The connection closed before the response was complete.

    @ivar responded: whether any of the response had arrived.
    """

    def __init__(self, responded, reason=None):
        """
        @param reason: the L{Failure} the connection was lost with.
        """
        detail = reason.getErrorMessage() if reason is not None else ""
        Exception.__init__(self, "the backend closed the connection" + (": " + detail if detail else ""))
        self.responded = responded
        # OpenSSL refuses a certificate it cannot verify; service-identity
        # one issued for another name.
        self.tlsFailed = reason is not None and reason.check(SSLError, VerificationError) is not None


def parseHead(head):
    """
    Parse a response head.

    @param head: the bytes before the blank line.
    @return: C{(version, code, phrase, fields)} with C{fields} a list of
        C{(name, value)} in the order received.
    @raise BadResponse: when it is not a valid response head.
    """
    lines = head.split(b"\r\n")
    if _VALID_HEAD.fullmatch(head) is not None:
        version, code, phrase = (lines[0] + b" ").split(b" ", 2)
        return (
            version,
            int(code),
            phrase[:-1],
            [(name, value.strip(b" \t")) for name, _, value in map(_splitField, lines[1:])],
        )
    parts = lines[0].split(b" ", 2)
    if (
        len(parts) < 2
        or not parts[0].startswith(b"HTTP/1.")
        or len(parts[1]) != 3
        or not parts[1].isdigit()
        or _CONTROL.search(lines[0])
    ):
        # A bare LF or other control byte in the status line would reach
        # the client as a line of its own (response splitting).
        raise BadResponse("invalid status line {!r}".format(lines[0][:100]))
    fields = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name) or _CONTROL.search(value):
            raise BadResponse("invalid header line {!r}".format(line[:100]))
        fields.append((name, value.strip(b" \t")))
    return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else b"", fields


def _splitField(line):
    return line.partition(b":")


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
      - head: a request was sent, reading the response head;
      - body: relaying the response body;
      - closed: the connection is gone.

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
        self._buffer = b""
        self._decoder = None
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

    def send(self, exchange, head, body):
        """
        Send one request.

        @param exchange: receives C{responded(code, phrase, fields, length,
            complete)},
            C{bodyReceived(data)} and C{bodyEnded(error)}.
        @param head: the request line and headers, ending with the blank
            line (C{Content-Length} or C{Transfer-Encoding} included).
        @param body: a L{proxyws.httpproxy.RequestBody}, or L{None}.
        """
        self.idle = False
        self._exchange = exchange
        self._head = exchange.request.method == b"HEAD"
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
            except _MalformedChunkedDataError:
                exchange, self._exchange = self._exchange, None
                self._decoder = None
                self.transport.abortConnection()
                exchange.bodyEnded(BadResponse("invalid chunked response body"))
            return
        if self._exchange is None:
            # Nothing was asked: the backend is not speaking HTTP/1.1.
            self.transport.abortConnection()
            return
        self._buffer += data
        self._readHead()

    def _readHead(self):
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD:
                    self._bad(BadResponse("response head larger than {} bytes".format(MAX_HEAD)))
                return
            head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
            try:
                version, code, phrase, fields = parseHead(head)
            except BadResponse as e:
                self._bad(e)
                return
            if 100 <= code < 200 and code != 101:
                continue  # an interim response: the real one follows
            break
        self._startBody(version, code, phrase, fields)

    def _startBody(self, version, code, phrase, fields):
        length = None
        chunked = False
        close = version == b"HTTP/1.0"
        for name, value in fields:
            lower = name.lower()
            if lower not in FRAMING:
                continue
            if lower == b"content-length" and value.isdigit():
                length = int(value)
            elif lower == b"transfer-encoding":
                chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            elif lower == b"connection":
                tokens = value.lower().replace(b" ", b"").split(b",")
                close = b"close" in tokens or (close and b"keep-alive" not in tokens)
        self._persistent = not close
        exchange = self._exchange
        if self._head or code in NO_BODY or code < 200:
            exchange.responded(code, phrase, fields, length if self._head else None, True)
            self._bodyDone(b"")
            return
        if chunked:
            decoder = _ChunkedTransferDecoder(exchange.bodyReceived, self._bodyDone)
            length = None
        elif length is not None:
            decoder = _IdentityTransferDecoder(length, exchange.bodyReceived, self._bodyDone)
        else:
            # The body runs to the end of the connection.
            self._persistent = False
            decoder = _UntilClose(exchange.bodyReceived)
        self._decoder = decoder
        exchange.responded(
            code, phrase, fields, length, length is not None and len(self._buffer) >= length
        )
        rest, self._buffer = self._buffer, b""
        if rest and self._decoder is decoder:
            decoder.dataReceived(rest)
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

    def _release(self):
        self.reused = True
        self.idle = True
        # A client that read slowly may have left the socket paused: the
        # next exchange must find it reading.
        self.transport.resumeProducing()
        if self._persistent and self.pool is not None:
            self.pool._quiescent(self)
        else:
            self.transport.loseConnection()

    def _bad(self, error):
        exchange, self._exchange = self._exchange, None
        self.transport.abortConnection()
        exchange.requestFailed(error, responded=True)

    def connectionLost(self, reason):
        """
        The connection closed: end or fail the exchange in progress.
        """
        if self.pool is not None:
            self.pool._lost(self)
        if self.deadline is not None:
            # Whoever started it last is done with it: let the reactor
            # forget it (and what its callback holds) now.
            self.deadline.cancel()
        self.idle = False
        exchange, self._exchange = self._exchange, None
        decoder, self._decoder = self._decoder, None
        if exchange is None:
            return
        if decoder is not None and isinstance(decoder, _UntilClose):
            exchange.bodyEnded(None)
        elif decoder is not None:
            exchange.bodyEnded(ConnectionLost(True, reason))
        else:
            exchange.requestFailed(
                ConnectionLost(bool(self._buffer), reason), responded=bool(self._buffer)
            )


class _UntilClose:
    """
    A body with no length: everything until the connection closes.
    """

    def __init__(self, dataCallback):
        self.dataReceived = dataCallback
