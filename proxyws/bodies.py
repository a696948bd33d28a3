"""
Strict body decoders for HTTP/1.1 messages, without I/O: a body of a
declared length, and a chunked body (RFC 9112 6 and 7.1).

They read client request bodies and backend response bodies alike.  They
raise L{proxyws.framing.BodyError}: 400 for a body that is not framed as it
must be (for a backend's response the proxy answers 502, or aborts the
client connection when the head has gone out), 413 for a body over the
size limit given.

Both take the callbacks of Twisted's private decoders they replace
(C{twisted.web.http._IdentityTransferDecoder} and
C{_ChunkedTransferDecoder}): C{dataCallback(piece)} for each piece of the
body, C{finishCallback(rest)} once, when it is complete, with the bytes
that came after it; and C{noMoreData()} when the connection ends.
"""

import re

from .errors import BodyError
from .framing import CHUNKED, DEFAULT_LIMITS, LENGTH, MAX_LENGTH, fieldLineError
from .headers import TOKEN

# The longest chunk-size line, extensions included (Twisted allows 1024;
# RFC 9112 7.1.1 asks servers to bound extensions), and the most extension
# bytes in one body: many small chunks with long extensions would otherwise
# cost far more than the data they carry.
CHUNK_LINE_LIMIT = 4096
CHUNK_EXTENSIONS_LIMIT = 65536


# A chunk-size line (RFC 9112 7.1 and 7.1.1): at most 16 hex digits, then
# extensions, each a token name with an optional token or quoted-string
# value.  Two things the grammar allows are refused, because parsers
# disagree on them: whitespace around ";" and "=" (BWS, which a sender must
# not send; h11 refuses it, Twisted takes it) and a backslash escape in a
# quoted value (Twisted refuses it, h11 takes it).
_QUOTED = rb'"[\t !#-\[\]-~\x80-\xff]*"'
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]{1,16})((?:;" + TOKEN + rb"(?:=(?:" + TOKEN + rb"|" + _QUOTED + rb"))?)*)"
)
_FIELD_LINE = re.compile(TOKEN + rb":[\t\x20-\x7e\x80-\xff]*")


class LengthDecoder:
    """
    A body of a declared length.

    @ivar remaining: the bytes still to come.
    """

    def __init__(self, length, dataCallback, finishCallback, limit=None):
        """
        @param length: the body length.
        @param dataCallback: called with each piece of the body.
        @param finishCallback: called once, when the body is complete, with
            the bytes received after it.
        @param limit: the largest body allowed, or L{None}.
        @raise BodyError: 413 when C{length} is over C{limit}.
        """
        if limit is not None and length > limit:
            raise BodyError(413, "the body is larger than %d bytes" % limit)
        self.remaining = length
        self._data = dataCallback
        self._finish = finishCallback

    def dataReceived(self, data):
        """
        Bytes of the body, and perhaps what follows it.
        """
        remaining = self.remaining
        if remaining is None:
            raise RuntimeError("the body was complete already")
        if len(data) < remaining:
            self.remaining = remaining - len(data)
            self._data(data)
            return
        self.remaining = None
        if remaining:
            self._data(data[:remaining] if len(data) > remaining else data)
        self._finish(data[remaining:])

    def noMoreData(self):
        """
        The connection ended.

        @raise BodyError: 400 when the body is not complete.
        """
        if self.remaining:
            raise BodyError(400, "the body ended %d bytes short" % self.remaining)


class ChunkedDecoder:
    """
    A body in the chunked transfer coding (RFC 9112 7.1), read strictly:
    hex digits only in a chunk size (at most 16, at most 2^63-1), extensions
    as the grammar has them and bounded, exactly CRLF after each chunk's
    data, a trailer section checked as header fields are and bounded by the
    same L{HeadLimits}.  Anything else raises L{BodyError} (400).

    States, each a method C{_state_NAME(data, position)} returning the next
    position: SIZE (a chunk-size line), DATA (a chunk's data), CRLF (the
    line end after it), TRAILER (trailer lines), DONE.

    @ivar received: the bytes of data decoded so far.
    @ivar trailers: the trailer fields, C{(name, value)} pairs, once done.
    """

    def __init__(self, dataCallback, finishCallback, limit=None, limits=DEFAULT_LIMITS):
        """
        @param dataCallback: called with each piece of the body.
        @param finishCallback: called once, when the body is complete, with
            the bytes received after it.
        @param limit: the most body bytes allowed (413 beyond), or L{None}.
        @param limits: the L{HeadLimits} trailer fields are held to.
        """
        self._data = dataCallback
        self._finish = finishCallback
        self._limit = limit
        self._limits = limits
        self._state = self._state_SIZE
        self._line = bytearray()
        self._remaining = 0
        self._extensions = 0
        self._trailerSize = 0
        self.received = 0
        self.trailers = []

    def dataReceived(self, data):
        """
        Bytes of the body, and perhaps what follows it.

        @raise BodyError: when the body is malformed or over its limit.
        """
        if self._state is None:
            raise RuntimeError("the body was complete already")
        position = 0
        while position < len(data) and self._state is not None:
            position = self._state(data, position)

    def noMoreData(self):
        """
        The connection ended.

        @raise BodyError: 400 when the body is not complete.
        """
        if self._state is not None:
            raise BodyError(400, "the chunked body ended before its last chunk")

    def _readLine(self, data, position, limit):
        """
        Gather a CRLF-ended line.

        @return: C{(line, next position)}, with L{None} for the line while
            it is incomplete.
        """
        end = data.find(b"\n", position)
        if end < 0:
            self._line += data[position:]
            if len(self._line) > limit + 1:
                raise BodyError(400, "a line of the chunked body is longer than %d bytes" % limit)
            return None, len(data)
        line = self._line + data[position : end + 1]
        self._line = bytearray()
        if len(line) > limit + 2:
            raise BodyError(400, "a line of the chunked body is longer than %d bytes" % limit)
        if line[-2:] != b"\r\n" or b"\r" in line[:-2]:
            raise BodyError(400, "a bare CR or LF in the chunked body")
        return bytes(line[:-2]), end + 1

    def _state_SIZE(self, data, position):
        line, position = self._readLine(data, position, CHUNK_LINE_LIMIT)
        if line is None:
            return position
        match = _CHUNK_LINE.fullmatch(line)
        if match is None:
            raise BodyError(400, "invalid chunk size line %r" % (line[:40].decode("latin-1"),))
        size = int(match.group(1), 16)
        self._extensions += len(match.group(2))
        if size > MAX_LENGTH:
            raise BodyError(400, "a chunk size over 2^63-1")
        if self._extensions > CHUNK_EXTENSIONS_LIMIT:
            raise BodyError(400, "chunk extensions over %d bytes" % CHUNK_EXTENSIONS_LIMIT)
        if self._limit is not None and self.received + size > self._limit:
            raise BodyError(413, "the body is larger than %d bytes" % self._limit)
        if size == 0:
            self._state = self._state_TRAILER
        else:
            self._remaining = size
            self._state = self._state_DATA
        return position

    def _state_DATA(self, data, position):
        take = min(self._remaining, len(data) - position)
        self._remaining -= take
        self.received += take
        if not self._remaining:
            self._state = self._state_CRLF
        self._data(data if take == len(data) else data[position : position + take])
        return position + take

    def _state_CRLF(self, data, position):
        # The CR may have come in one read and the LF in the next.
        expected = b"\r\n"[len(self._line) :]
        got = data[position : position + len(expected)]
        if expected[: len(got)] != got:
            raise BodyError(400, "a chunk's data is not followed by CRLF")
        if got == expected:
            self._line = bytearray()
            self._state = self._state_SIZE
        else:
            self._line += got
        return position + len(got)

    def _state_TRAILER(self, data, position):
        limits = self._limits
        line, position = self._readLine(data, position, limits.fieldLine)
        if line is None:
            return position
        if not line:
            self._state = None
            self._finish(data[position:])
            return len(data)
        self._trailerSize += len(line) + 2
        if self._trailerSize > limits.fieldsSize or len(self.trailers) >= limits.fieldCount:
            raise BodyError(400, "the trailer section is too large")
        if _FIELD_LINE.fullmatch(line) is None:
            raise BodyError(400, "in the trailer section: %s" % (fieldLineError(line),))
        name, _, value = line.partition(b":")
        self.trailers.append((name, value.strip(b" \t")))
        return position


def decoderFor(head, dataCallback, finishCallback, limit=None):
    """
    The decoder of a request's body, as its head frames it.

    @param head: a L{proxyws.framing.RequestHead}.
    @param dataCallback: called with each piece of the body.
    @param finishCallback: called once, when the body is complete, with the
        bytes received after it (the next request).
    @param limit: the most body bytes allowed (413 beyond), or L{None}.
    @return: a L{LengthDecoder} or L{ChunkedDecoder}, or L{None} when the
        request has no body.
    @raise BodyError: 413 when a declared length is over C{limit}.
    """
    if head.framing == CHUNKED:
        return ChunkedDecoder(dataCallback, finishCallback, limit)
    if head.framing == LENGTH:
        return LengthDecoder(head.contentLength, dataCallback, finishCallback, limit)
    return None
