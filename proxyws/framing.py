"""
Strict HTTP/1.1 request framing, without I/O: where a request head ends,
what it says, and where its body ends.

A front door must read every request the way the server behind it will, or
refuse it: a request whose framing two parsers could read differently is how
requests are smuggled past a proxy (RFC 9112 section 11.2).  So this parser
refuses, with the status the client gets, everything RFC 9112 lets a server
refuse and much that lenient parsers take: obsolete line folding, bare CR or
LF, control bytes, whitespace before a colon, both Content-Length and
Transfer-Encoding, lengths no 64-bit server can hold, a missing or doubled
Host, a doubled field that an access or routing decision reads, fragments
and other invalid request targets.

  - L{HeadReader} finds the end of one request head in bytes fed to it
    piece by piece, scanning each byte once, and refuses a head over the
    L{HeadLimits} as soon as it is over them.
  - L{parseRequestHead} turns a head into a frozen L{RequestHead} or raises
    L{HeadError}; a common head is checked by one regular expression.
  - L{HeadError} and L{BodyError} carry the status the client gets; the
    body decoders that raise the second are in L{proxyws.bodies}.

The statuses follow RFC 9112 and RFC 9110: 400 for anything malformed or
ambiguous, 414 for a long request line, 431 for large header fields, 501 for
a method or transfer coding the proxy does not implement, 505 for an HTTP
version other than 1.0 and 1.1, 413 for a body over its limit.
"""

import ipaddress
import re
from collections import namedtuple
from functools import lru_cache

import attr

from .errors import HeadError
from .heads import encodeResponseHead
from .headers import TOKEN

# Fields that an access rule, a route or the websocket handshake reads.  Each
# may appear at most once: with two, one component may check the first while
# another uses the last, or the backend reads both (two Authorization fields
# passed the gate on the first and reached the backend with the second).
SINGLE_FIELDS = frozenset(
    [
        b"host",
        b"content-length",
        b"authorization",
        b"proxy-authorization",
        b"upgrade",
        b"origin",
        b"sec-websocket-key",
        b"sec-websocket-version",
    ]
)

# Fields whose values decide how the request is framed or handled, read by
# the parser (lower case).  Every other field only travels.
_READ_FIELDS = SINGLE_FIELDS | {b"transfer-encoding", b"connection", b"expect"}

# Leading empty lines skipped before a request line.  RFC 9112 2.2 asks a
# server to ignore at least one (a client may send CRLF after a POST body);
# a few more cost nothing, an endless stream of them must not hold a
# connection.
LEADING_EMPTY_LINES = 4

# The largest length a body may declare: what a signed 64-bit integer holds,
# as nginx, HAProxy and Apache parse it.  A larger one is refused, not
# passed on to a backend that would read it modulo 2^64.
MAX_LENGTH = 2**63 - 1

# How a request's body is framed (RequestHead.framing).
NO_BODY = "none"
LENGTH = "length"
CHUNKED = "chunked"


@attr.s(frozen=True, slots=True)
class HeadLimits:
    """
    The sizes a request head may reach; beyond them it is refused at once.

    The defaults are nginx's (C{large_client_header_buffers 4 8k}: a request
    line or a field line up to 8 KiB, 32 KiB of fields in all) with Apache's
    C{LimitRequestFields 100} (HAProxy's C{tune.http.maxhdr} is 101).  nginx
    answers an over-long line 414 or 400; proxyws answers 414 for the
    request line and 431 (RFC 6585) for fields.

    @ivar requestLine: bytes in the request line, without its CRLF (414).
    @ivar fieldLine: bytes in one field line, without its CRLF (431).
    @ivar fieldsSize: bytes of all field lines with their CRLFs (431).
    @ivar fieldCount: the number of field lines (431).
    """

    requestLine = attr.ib(default=8192)
    fieldLine = attr.ib(default=8192)
    fieldsSize = attr.ib(default=32768)
    fieldCount = attr.ib(default=100)
    # A head no longer than this is within every size limit.
    _shortest = attr.ib(init=False, repr=False, eq=False)

    def __attrs_post_init__(self):
        object.__setattr__(self, "_shortest", min(self.requestLine, self.fieldLine, self.fieldsSize))


DEFAULT_LIMITS = HeadLimits()


def refusal(error):
    """
    The bytes of the answer to a refused request; the connection is closed
    after them.

    @param error: a L{HeadError} or L{BodyError}.
    @return: a whole HTTP/1.1 response.
    """
    body = b"%d %s\n\n%s\n" % (error.status, error.phrase, error.detail.encode("utf-8"))
    fields = [
        (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"Content-Length", b"%d" % len(body)),
        (b"Connection", b"close"),
    ]
    return encodeResponseHead(b"HTTP/1.1", error.status, error.phrase, fields) + body


class HeadReader:
    """
    Finds the end of a request head in bytes fed piece by piece.

    Each byte is scanned once.  A head over its L{HeadLimits} is refused as
    soon as the bytes show it: a request line longer than allowed before its
    CRLF has come (414), a field line, the fields in all or their number
    (431).  A bare LF is refused where it is seen (400): a client that ends
    lines with LF alone would otherwise wait for a blank line that never
    comes.

    After a head is returned the reader is empty and reads the next one.

    States: request line (C{_fields is None}), fields.
    """

    def __init__(self, limits=DEFAULT_LIMITS):
        """
        @param limits: the L{HeadLimits}.
        """
        self._limits = limits
        self._fast = limits._shortest
        self.reset()

    def reset(self):
        """
        Forget everything fed so far.
        """
        self._buffer = bytearray()
        self._start = 0  # where the head starts (after empty lines)
        self._line = 0  # where the line being read starts
        self._scanned = 0  # bytes searched for LF
        self._empty = 0
        self._fields = None  # bytes of field lines so far, once past the request line
        self._count = 0

    def feed(self, data):
        """
        Take bytes from the client.

        @param data: the bytes received.
        @return: L{None} while the head is incomplete, else C{(head, rest)}:
            the head without leading empty lines and without the blank line
            that ends it (what L{parseRequestHead} takes), and the bytes
            after it (the body, or the next request).
        @raise HeadError: when the head is already sure to be refused.
        """
        if not self._buffer:
            # The common case: a whole, small head in one read.
            end = data.find(b"\r\n\r\n")
            if (
                0 < end <= self._fast
                and data[:2] != b"\r\n"
                and data.count(b"\r\n", 0, end) <= self._limits.fieldCount
            ):
                return data[:end], data[end + 4 :]
        self._buffer += data
        return self._scan()

    def _scan(self):
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n", self._scanned)
            if end < 0:
                self._scanned = len(buffer)
                # Its last byte may be the CR of the line's end.
                self._checkPartial(len(buffer) - self._line - (buffer[-1:] == b"\r"))
                return None
            if end == 0 or buffer[end - 1] != 0x0D:
                raise HeadError(400, "a line ends in a bare LF")
            self._scanned = end + 1
            found = self._lineEnded(end - 1 - self._line, end + 1)
            if found is not None:
                return found

    def _checkPartial(self, length):
        """
        A line of C{length} bytes has no CRLF yet: refuse it if it is
        already too long.
        """
        limits = self._limits
        if self._fields is None:
            if length > limits.requestLine:
                raise HeadError(414, "the request line is longer than %d bytes" % limits.requestLine)
        elif length > limits.fieldLine:
            raise HeadError(431, "a header field line is longer than %d bytes" % limits.fieldLine)
        elif self._fields + length > limits.fieldsSize:
            raise HeadError(431, "the header fields are larger than %d bytes" % limits.fieldsSize)

    def _lineEnded(self, length, next):
        """
        A line of C{length} bytes ended; the next starts at C{next}.

        @return: C{(head, rest)} when it was the blank line ending the head.
        """
        limits = self._limits
        self._line = next
        if self._fields is None:
            if length == 0:
                self._empty += 1
                if self._empty > LEADING_EMPTY_LINES:
                    raise HeadError(400, "more than %d empty lines before the request" % LEADING_EMPTY_LINES)
                self._start = next
                return None
            if length > limits.requestLine:
                raise HeadError(414, "the request line is longer than %d bytes" % limits.requestLine)
            self._fields = 0
            return None
        if length == 0:
            buffer = self._buffer
            head, rest = bytes(buffer[self._start : next - 4]), bytes(buffer[next:])
            self.reset()
            return head, rest
        self._count += 1
        self._fields += length + 2
        if length > limits.fieldLine:
            raise HeadError(431, "a header field line is longer than %d bytes" % limits.fieldLine)
        if self._fields > limits.fieldsSize:
            raise HeadError(431, "the header fields are larger than %d bytes" % limits.fieldsSize)
        if self._count > limits.fieldCount:
            raise HeadError(431, "more than %d header fields" % limits.fieldCount)
        return None


def hasBody(head):
    """
    Whether a request has a body to read (a declared length of 0 is none).

    @param head: a L{RequestHead}.
    """
    return head.framing is not NO_BODY and head.contentLength != 0


# A RequestHead is a named tuple rather than an attrs value: it is as
# frozen, and made in one call, where a frozen attrs class sets its eleven
# fields one by one (the largest single cost of reading a request head).
_REQUEST_HEAD_FIELDS = (
    "method target version fields framing contentLength host uri connection"
    " expectContinue upgrade"
)


class RequestHead(namedtuple("RequestHead", _REQUEST_HEAD_FIELDS)):
    """
    A request head as the proxy reads it, valid and unambiguous.

    @ivar method: the method, a token (case matters).
    @ivar target: the request target as received.
    @ivar version: C{b"HTTP/1.0"} or C{b"HTTP/1.1"}.
    @ivar fields: the header fields as a tuple of C{(name, value)} in the
        order received, names as sent, values without surrounding spaces
        and tabs.  For an absolute-form target the C{Host} field's value is
        the target's authority (RFC 9112 3.2.2).
    @ivar framing: L{NO_BODY}, L{LENGTH} or L{CHUNKED}.
    @ivar contentLength: the declared body length when L{LENGTH}, else
        L{None}.
    @ivar host: the host the request is for: the one C{Host} value, or the
        authority of an absolute-form target; L{None} for an HTTP/1.0
        request without either.
    @ivar uri: the target in origin form (path and query) to route and to
        send on: the target itself, the path and query of an absolute-form
        target (C{b"/"} when it has no path), or C{b"*"}.
    @ivar connection: the lower-cased options of the C{Connection} fields.
    @ivar expectContinue: an HTTP/1.1 request with C{Expect: 100-continue}.
    @ivar upgrade: the lower-cased C{Upgrade} value of an HTTP/1.1 request
        whose C{Connection} names C{upgrade}, else L{None}.
    """

    __slots__ = ()

    @property
    def persistent(self):
        """
        Whether the connection may carry another request after this one
        (RFC 9112 9.3).
        """
        if b"close" in self.connection:
            return False
        return self.version == b"HTTP/1.1" or b"keep-alive" in self.connection


# A head that is syntactically valid: a token method, a target of visible
# ASCII without "#", HTTP/1.0 or 1.1, field lines of a token, a colon, and a
# value of visible ASCII, obs-text, spaces and tabs (RFC 9112 3 and 5, RFC
# 9110 5.5).  _HEAD takes the common head, whose values do not end in
# whitespace, in one pass; _SPACED_HEAD any valid head; a head that neither
# takes is examined by _diagnose.
_HEAD = re.compile(
    rb"(" + TOKEN + rb") ([!\"$-~]+) HTTP/1\.([01])"
    rb"((?:\r\n" + TOKEN + rb":(?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)*)"
)
_SPACED_HEAD = re.compile(
    rb"(" + TOKEN + rb") ([!\"$-~]+) HTTP/1\.([01])"
    rb"((?:\r\n" + TOKEN + rb":[\t\x20-\x7e\x80-\xff]*)*)"
)

# The fields of a valid head: names, and values without the whitespace
# that leads them (and, after _HEAD, none trails them).
_FIELD = re.compile(rb"\r\n([^:]*):[ \t]*([^\r]*)")

_REQUEST_LINE = re.compile(rb"(" + TOKEN + rb") ([!\"$-~]+) HTTP/1\.([01])")
_TOKEN = re.compile(TOKEN)
_DIGITS = re.compile(rb"[0-9]{1,19}")
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

# uri-host [ ":" port ] (RFC 9110 7.2, RFC 3986 3.2.2): an IP literal in
# brackets (checked further), or an IPv4 address or registered name of
# unreserved characters, sub-delims and percent-escapes; at most five port
# digits.
_HOST = re.compile(
    rb"(\[[0-9A-Fa-f:.]+\]|\[v[0-9A-Fa-f]+\.[-A-Za-z0-9._~!$&'()*+,;=:]+\]"
    rb"|(?:[-A-Za-z0-9._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::[0-9]{0,5})?"
)

# The common Host: a name or IPv4 address of letters, digits, "-" and "."
# and a port; a subset of _HOST, checked first because it is quicker.
_NAME_HOST = re.compile(rb"[-A-Za-z0-9.]+(?::[0-9]{1,5})?")

# An absolute-form target for http or https: the authority, then the path
# and query (RFC 9112 3.2.2, RFC 9110 4.2).
_ABSOLUTE = re.compile(rb"[Hh][Tt][Tt][Pp][Ss]?://([^/?]*)(.*)")


def parseRequestHead(head, limits=DEFAULT_LIMITS):
    """
    Read a request head.

    @param head: the bytes from the request line to the last field line,
        without the blank line (as L{HeadReader} returns them).
    @param limits: the L{HeadLimits} to hold it to.
    @return: a L{RequestHead}.
    @raise HeadError: with the status the client gets, when the head is
        malformed, ambiguous, over a limit, or asks for what the proxy does
        not implement.
    """
    if len(head) > limits._shortest:
        _checkSizes(head, limits)
    match = _HEAD.fullmatch(head)
    if match is not None:
        method, target, minor, blob = match.groups()
        fields = _FIELD.findall(blob)
    else:
        match = _SPACED_HEAD.fullmatch(head)
        if match is None:
            _diagnose(head)
        method, target, minor, blob = match.groups()
        fields = [(name, value.rstrip(b" \t")) for name, value in _FIELD.findall(blob)]
    if len(fields) > limits.fieldCount:
        raise HeadError(431, "more than %d header fields" % limits.fieldCount)
    return _meaning(method, target, b"HTTP/1." + minor, fields)


def _checkSizes(head, limits):
    """
    Refuse a head with a line or fields over C{limits} (a head that did not
    come through a L{HeadReader}).
    """
    lines = head.split(b"\r\n")
    if len(lines[0]) > limits.requestLine:
        raise HeadError(414, "the request line is longer than %d bytes" % limits.requestLine)
    if any(len(line) > limits.fieldLine for line in lines[1:]):
        raise HeadError(431, "a header field line is longer than %d bytes" % limits.fieldLine)
    if len(head) - len(lines[0]) > limits.fieldsSize:
        raise HeadError(431, "the header fields are larger than %d bytes" % limits.fieldsSize)


def _meaning(method, target, version, fields):
    """
    What a syntactically valid head asks for; refuse what is ambiguous.
    """
    # Lower-cased name -> the values of the fields the proxy reads.
    read = {}
    for name, value in fields:
        lower = name.lower()
        if lower in _READ_FIELDS:
            values = read.get(lower)
            if values is None:
                read[lower] = [value]
            elif lower in SINGLE_FIELDS:
                raise HeadError(400, "more than one %s field" % lower.decode("ascii"))
            else:
                values.append(value)
    if target[:1] == b"/" and method != b"CONNECT":
        uri, authority = target, None
    else:
        uri, authority = _requestTarget(method, target)
    connection = _connectionOptions(read.get(b"connection"))
    framing, length = _framing(version, read)
    host = _host(version, read.get(b"host"), authority)
    if authority is not None and b"host" in read:
        # RFC 9112 3.2.2: the target's authority replaces the Host field.
        fields = list(fields)
        index = [name.lower() for name, _ in fields].index(b"host")
        fields[index] = (fields[index][0], authority)
    http11 = version == b"HTTP/1.1"
    upgrade = read.get(b"upgrade")
    return RequestHead(
        method,
        target,
        version,
        tuple(fields),
        framing,
        length,
        host,
        uri,
        connection,
        http11 and b"expect" in read and _expectsContinue(read[b"expect"]),
        upgrade[0].lower() if upgrade and http11 and b"upgrade" in connection else None,
    )


def _requestTarget(method, target):
    """
    The origin-form target to route, and the authority of an absolute-form
    target (or L{None}).
    """
    if method == b"CONNECT":
        _refuseConnect()
    first = target[:1]
    if first == b"/":
        return target, None
    if target == b"*":
        if method != b"OPTIONS":
            raise HeadError(400, "the asterisk target is only for OPTIONS")
        return target, None
    match = _ABSOLUTE.fullmatch(target)
    if match is None:
        raise HeadError(400, "invalid request target")
    authority, rest = match.groups()
    if b"@" in authority:
        # RFC 9110 4.2.4: user information in an http(s) target is an error.
        raise HeadError(400, "user information in the request target")
    if not authority or not _validHost(authority) or authority[:1] == b":":
        raise HeadError(400, "invalid host in the request target")
    if rest[:1] != b"/":
        rest = b"/" + rest
    return rest, authority


def _refuseConnect():
    """
    RFC 9110 9.3.6: CONNECT asks for a tunnel.  A reverse proxy is the
    origin server for its clients and does not implement it: 501, as for
    any method a server does not implement (RFC 9110 9.1); 405 would claim
    that some other resource here allows it.
    """
    raise HeadError(501, "CONNECT is not supported")


def _validHost(value):
    """
    Whether C{value} is C{uri-host [":" port]}.
    """
    match = _HOST.fullmatch(value)
    if match is None:
        return False
    literal = match.group(1)
    if literal[:1] == b"[" and literal[1:2] != b"v":
        try:
            ipaddress.IPv6Address(literal[1:-1].decode("ascii"))
        except ValueError:
            return False
    return True


def _host(version, values, authority):
    """
    The host a request is for (RFC 9112 3.2): the one valid Host value, or
    the authority of an absolute-form target.
    """
    if values is None:
        if version == b"HTTP/1.1":
            raise HeadError(400, "an HTTP/1.1 request needs a Host field")
        return authority
    value = values[0]
    if _NAME_HOST.fullmatch(value) is None and not _validHost(value):
        raise HeadError(400, "invalid Host field")
    return value if authority is None else authority


def _framing(version, read):
    """
    How the body is framed (RFC 9112 6): C{(framing, length)}.
    """
    codings = read.get(b"transfer-encoding")
    lengths = read.get(b"content-length")
    if codings is not None:
        if lengths is not None:
            # RFC 9112 6.1 lets a server go by Transfer-Encoding alone; a
            # backend or another hop may go by Content-Length.
            raise HeadError(400, "both Content-Length and Transfer-Encoding")
        if version != b"HTTP/1.1":
            # RFC 9112 6.1: the framing of an HTTP/1.0 message with
            # Transfer-Encoding is faulty.
            raise HeadError(400, "Transfer-Encoding in an HTTP/1.0 request")
        _checkCodings(codings)
        return CHUNKED, None
    if lengths is None:
        return NO_BODY, None
    value = lengths[0]
    # One decimal number only: not a list of equal values (which RFC 9112
    # 6.3 lets a recipient take), not signed, no spaces inside, at most 19
    # digits and 2^63-1 (what servers with 64-bit lengths read alike).
    if _DIGITS.fullmatch(value) is None or int(value) > MAX_LENGTH:
        raise HeadError(400, "invalid Content-Length %r" % (value[:40].decode("latin-1"),))
    return LENGTH, int(value)


def _checkCodings(codings):
    """
    Refuse transfer codings other than one C{chunked}, last (RFC 9112 6.1
    and 6.3).
    """
    names = [
        coding.strip(b" \t").lower()
        for value in codings
        for coding in value.split(b",")
    ]
    if names[-1] != b"chunked":
        raise HeadError(400, "chunked is not the last transfer coding")
    if names.count(b"chunked") > 1:
        raise HeadError(400, "chunked is applied more than once")
    if len(names) > 1:
        raise HeadError(501, "transfer codings other than chunked are not supported")


# Connection values seen -> their options: clients send few distinct ones.
# Bounded, so that a client sending new values each time fills nothing.
def _connectionOptions(values):
    """
    The lower-cased options of the Connection fields (a list of tokens;
    empty elements are allowed, RFC 9110 5.6.1).

    @raise HeadError: when an option is not a token.
    """
    if values is None:
        return frozenset()
    if len(values) == 1:
        return _optionsOf(values[0])
    return frozenset().union(*map(_optionsOf, values))


# Nearly every request has one Connection field, with one of a few values:
# each is parsed once (an invalid one raises every time: nothing is kept).
# Bounded, so that a client sending new values only pushes older ones out.
@lru_cache(maxsize=256)
def _optionsOf(value):
    options = set()
    for option in value.split(b","):
        option = option.strip(b" \t")
        if option:
            if _TOKEN.fullmatch(option) is None:
                raise HeadError(400, "invalid Connection field")
            options.add(option.lower())
    return frozenset(options)


def _expectsContinue(values):
    return any(
        item.strip(b" \t").lower() == b"100-continue"
        for value in values
        for item in value.split(b",")
    )


def _diagnose(head):
    """
    Say what is wrong with a head that is not syntactically valid.

    @raise HeadError: always.
    """
    crlf = head.count(b"\r\n")
    if head.count(b"\n") != crlf:
        raise HeadError(400, "a line ends in a bare LF")
    if head.count(b"\r") != crlf:
        raise HeadError(400, "a bare CR in the request head")
    lines = head.split(b"\r\n")
    if _REQUEST_LINE.fullmatch(lines[0]) is None:
        _diagnoseRequestLine(lines[0])
    for line in lines[1:]:
        _diagnoseField(line)
    raise HeadError(400, "invalid request head")


def _diagnoseRequestLine(line):
    parts = line.split(b" ")
    if len(parts) != 3 or not all(parts):
        raise HeadError(400, "invalid request line")
    method, target, version = parts
    if version not in (b"HTTP/1.0", b"HTTP/1.1"):
        if _VERSION.fullmatch(version) is not None:
            raise HeadError(505, "only HTTP/1.0 and HTTP/1.1 are supported")
        raise HeadError(400, "invalid HTTP version")
    if _TOKEN.fullmatch(method) is None:
        raise HeadError(400, "invalid method")
    if method == b"CONNECT":
        _refuseConnect()
    if b"#" in target:
        # The request-target grammar has no fragment: "/admin#" must not
        # escape a rule for "/admin" and reach the backend as "/admin".
        raise HeadError(400, "a fragment (#) in the request target")
    raise HeadError(400, "a control, space or non-ASCII byte in the request target")


def _diagnoseField(line):
    detail = fieldLineError(line)
    if detail is not None:
        raise HeadError(400, detail)


def fieldLineError(line):
    """
    What is wrong with a field line (of a head or a trailer section).

    @param line: the line without its CRLF.
    @return: a short text, or L{None} when the line is valid.
    """
    if line[:1] in (b" ", b"\t"):
        # RFC 9112 5.2 (and 2.2 for the first field line).
        return "obsolete line folding"
    name, colon, value = line.partition(b":")
    if not colon:
        return "a header field line without a colon"
    if not name:
        return "a header field with an empty name"
    if name[-1:] in (b" ", b"\t"):
        # RFC 9112 5.1: a server MUST reject it with 400.
        return "whitespace before the colon of a header field"
    if _TOKEN.fullmatch(name) is None:
        return "invalid header field name"
    if _CONTROL.search(value) is not None:
        return "a control byte in a header field value"
    if b"\r" in line or b"\n" in line:
        return "a bare CR or LF in a header field"
    return None

