"""
The HTTP/1.1 message-head codec: every response head a backend sends is
parsed here (an HTTP response, an interim response, a refused websocket
upgrade, the 101 that accepts one), its body framing decided here, and every
head proxyws writes is built here.

Nothing here does I/O.  The rules are RFC 9112 (message syntax and framing)
and RFC 9110 (field syntax), read strictly: a proxy that relays a head it
does not understand exactly as the backend meant it opens the door to
response splitting and smuggling, so anything ambiguous is a L{BadResponse}
(the client gets 502, as nginx answers such upstreams).
"""

import re

from .errors import BadResponse
from .headers import TOKEN

# A response head larger than this is refused (nginx's default
# proxy_buffer_size is 4-8 KiB; large cookies need more).
MAX_HEAD = 65536

# Every response head starts with this (RFC 9112 4): bytes that cannot be
# its beginning (a server of another protocol, such as SSH's banner) are
# no HTTP/1.x answer, and waiting for more of them would only hold the
# client until the response timeout.
_START = b"HTTP/1."

# RFC 9110 15: status codes are three digits from 100 to 599.
_STATUS = re.compile(rb"[1-5][0-9][0-9]")

# RFC 9110 5.1 and 5.5: a field name is a token; no control bytes but tab
# in a status line or a field value (a bare CR or LF there would reach the
# client as a line of its own: response splitting).
_TOKEN = re.compile(TOKEN)
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

# A whole valid response head, checked in one pass; a head that does not
# match is parsed line by line to say what is wrong with it.
_VALID_HEAD = re.compile(
    rb"HTTP/1\.[01] [1-5][0-9]{2}(?: [^\x00-\x08\x0a-\x1f\x7f]*)?"
    rb"(?:\r\n" + TOKEN + rb":[^\x00-\x08\x0a-\x1f\x7f]*)*"
)

# The fields of a valid head, each as its name and its value without the
# spaces and tabs around it, in one pass (a field per match, the blank
# before the value skipped, the value ending at its last other byte).
_FIELD = re.compile(rb"\r\n([^:]*):[ \t]*((?:[^\r]*[^\r \t])?)[ \t]*")

# Statuses whose responses never have a body (RFC 9110 6.4.1), besides 1xx.
NO_BODY = frozenset([204, 304])

# Longest Content-Length taken: 2^63 - 1 has 19 digits, and no C server on
# the other side of the proxy can represent more.
_MAX_LENGTH = 2**63 - 1

# How a response body is delimited (RFC 9112 6.3).
NONE, LENGTH, CHUNKED, UNTIL_CLOSE = "none", "length", "chunked", "until close"


class ResponseHead:
    """
    A parsed response head.

    @ivar version: C{b"HTTP/1.1"} or C{b"HTTP/1.0"}.
    @ivar code: the status code, 100 to 599.
    @ivar phrase: the reason phrase (may be empty).
    @ivar fields: C{(name, value)} pairs in the order received, values
        without surrounding whitespace.
    """

    __slots__ = ("version", "code", "phrase", "fields")

    def __init__(self, version, code, phrase, fields):
        self.version = version
        self.code = code
        self.phrase = phrase
        self.fields = fields

    def __repr__(self):
        return "<ResponseHead {} {} {!r}>".format(
            self.version.decode("ascii"), self.code, self.fields
        )


class Framing:
    """
    How the body of a response is delimited, and whether the connection
    can carry another request after it.

    @ivar kind: L{NONE}, L{LENGTH}, L{CHUNKED} or L{UNTIL_CLOSE}.
    @ivar length: the body length for L{LENGTH}, else L{None}.
    @ivar persistent: whether the connection stays usable afterwards.
    @ivar declared: the length a head-only answer (to HEAD) declares, or
        L{None}: the client gets it in C{Content-Length}.
    """

    __slots__ = ("kind", "length", "persistent", "declared")

    def __init__(self, kind, length, persistent, declared=None):
        self.kind = kind
        self.length = length
        self.persistent = persistent
        self.declared = declared


def findHeadEnd(buffer):
    """
    Where the head in C{buffer} ends.

    @return: the offset of the blank line's C{CRLF CRLF}, or -1 when the
        head is not complete.
    @raise BadResponse: when the head is larger than L{MAX_HEAD}, or when
        an incomplete one does not start as a status line does.
    """
    end = buffer.find(b"\r\n\r\n")
    if end < 0 and len(buffer) > MAX_HEAD or end > MAX_HEAD:
        raise BadResponse("response head larger than {} bytes".format(MAX_HEAD))
    if end < 0:
        start = buffer[:7]
        if _START[: len(start)] != start:
            raise BadResponse("not an HTTP/1.x response: {!r}".format(buffer[:40]))
    return end


def parseResponseHead(head):
    """
    Parse a response head.

    @param head: the bytes before the blank line.
    @return: a L{ResponseHead}.
    @raise BadResponse: when it is not a valid HTTP/1.x response head.
    """
    if _VALID_HEAD.fullmatch(head) is not None:
        end = head.find(b"\r\n")
        if end < 0:
            status, fields = head, []
        else:
            status, fields = head[:end], _FIELD.findall(head, end)
        version, code, phrase = (status + b" ").split(b" ", 2)
        return ResponseHead(version, int(code), phrase[:-1], fields)
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if (
        len(parts) < 2
        or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0")
        or not _STATUS.fullmatch(parts[1])
        or _CONTROL.search(lines[0])
    ):
        raise BadResponse("invalid status line {!r}".format(lines[0][:100]))
    fields = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name) or _CONTROL.search(value):
            raise BadResponse("invalid header line {!r}".format(line[:100]))
        fields.append((name, value.strip(b" \t")))
    return ResponseHead(parts[0], int(parts[1]), parts[2] if len(parts) > 2 else b"", fields)


def responseFraming(head, method, upgrading=False):
    """
    Decide how the body of a response is delimited (RFC 9112 6.3), refusing
    what a proxy cannot relay without guessing.

    @param head: the L{ResponseHead}.
    @param method: the request's method.
    @param upgrading: whether the request asked for a websocket upgrade
        (only then is a 101 an answer).
    @return: a L{Framing}.
    @raise BadResponse: for two or invalid Content-Length values, a
        transfer coding other than chunked, both Transfer-Encoding and
        Content-Length, Transfer-Encoding in an HTTP/1.0 response, or a 101
        that nothing asked for.
    """
    code = head.code
    if code == 101 and not upgrading:
        raise BadResponse("101 Switching Protocols to a request that asked for no upgrade")
    lengths = []
    codings = None
    close = head.version == b"HTTP/1.0"
    for name, value in head.fields:
        lower = name.lower()
        if lower == b"content-length":
            lengths.append(value)
        elif lower == b"transfer-encoding":
            codings = (codings or []) + [c.strip().lower() for c in value.split(b",")]
        elif lower == b"connection":
            tokens = value.lower().replace(b" ", b"").replace(b"\t", b"").split(b",")
            close = b"close" in tokens or (close and b"keep-alive" not in tokens)
    length = _contentLength(lengths)
    if codings is not None:
        _checkCodings(codings, head.version, length)
    if method == b"HEAD" or code < 200 or code in NO_BODY:
        return Framing(NONE, None, not close, length if method == b"HEAD" else None)
    if codings is not None:
        return Framing(CHUNKED, None, not close)
    if length is not None:
        return Framing(LENGTH, length, not close)
    return Framing(UNTIL_CLOSE, None, False)


def _contentLength(values):
    """
    The one Content-Length of a response, or L{None} when it has none.
    """
    if not values:
        return None
    if len(values) > 1:
        raise BadResponse("more than one Content-Length: {!r}".format(values[:4]))
    value = values[0]
    if not value.isdigit() or not value.isascii() or len(value) > 19 or int(value) > _MAX_LENGTH:
        raise BadResponse("invalid Content-Length {!r}".format(value[:40]))
    return int(value)


def _checkCodings(codings, version, length):
    if version == b"HTTP/1.0":
        raise BadResponse("Transfer-Encoding in an HTTP/1.0 response")
    if length is not None:
        raise BadResponse("both Transfer-Encoding and Content-Length")
    if codings != [b"chunked"]:
        raise BadResponse(
            "unsupported transfer coding {!r}".format(b", ".join(codings)[:60])
        )


def encodeResponseHead(version, code, phrase, fields):
    """
    The bytes of a response head, ending with the blank line.

    @param version: C{b"HTTP/1.1"} or C{b"HTTP/1.0"}.
    @param code: the status code (an L{int}).
    @param phrase: the reason phrase.
    @param fields: C{(name, value)} pairs, in the order to send.
    @rtype: L{bytes}
    """
    lines = [version, b" %d " % code, phrase, b"\r\n"]
    for name, value in fields:
        lines += (name, b": ", value, b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


def encodeRequestHead(method, target, headers, framing=()):
    """
    The bytes of a request head to a backend, ending with the blank line.

    @param method: the method.
    @param target: the request target (path and query).
    @param headers: C{(name, values)} pairs, each value sent on a line of
        its own.
    @param framing: C{(name, value)} fields that frame the body
        (C{Content-Length} or C{Transfer-Encoding}), sent last.
    @rtype: L{bytes}
    """
    lines = [method, b" ", target, b" HTTP/1.1\r\n"]
    for name, values in headers:
        for value in values:
            lines += (name, b": ", value, b"\r\n")
    for name, value in framing:
        lines += (name, b": ", value, b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


def mergeFields(relayed, own):
    """
    The fields a client gets: the relayed ones in their order, less those
    the proxy sets itself, then the proxy's own.

    @param relayed: C{(name, value)} pairs from the backend (already
        filtered by L{proxyws.headers.responseFields}).
    @param own: C{(name, values)} pairs the proxy sets (such as
        C{Strict-Transport-Security}).
    @return: a L{list} of C{(name, value)} pairs.
    """
    if not own:
        return list(relayed)
    names = {name.lower() for name, _ in own}
    out = [field for field in relayed if field[0].lower() not in names]
    for name, values in own:
        out += ((name, value) for value in values)
    return out
