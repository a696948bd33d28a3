"""
Tests for L{proxyws.framing} and L{proxyws.bodies}: what request heads are
taken and how they are read, what is refused and with which status, where
a head ends when its bytes come piece by piece, and how bodies are decoded;
as tables.  The differential tests against Twisted and h11 are in
L{tests.test_framing_differential}.
"""

from twisted.trial.unittest import SynchronousTestCase

from proxyws.bodies import ChunkedDecoder, LengthDecoder, decoderFor
from proxyws.errors import ResponseError
from proxyws.errors import BodyError, HeadError
from proxyws.framing import (
    CHUNKED,
    DEFAULT_LIMITS,
    LEADING_EMPTY_LINES,
    LENGTH,
    NO_BODY,
    SINGLE_FIELDS,
    HeadLimits,
    HeadReader,
    parseRequestHead,
    refusal,
)


def head(*lines):
    """
    A request head of C{lines}, without the blank line that ends it.
    """
    return b"\r\n".join(lines)


GET = b"GET / HTTP/1.1"
HOST = b"Host: example.com"

# (what, head, {attribute: expected value}) for heads that are taken.
ACCEPTED = [
    (
        "a plain GET",
        head(b"GET /a/b?c=d HTTP/1.1", HOST, b"Accept: */*"),
        dict(
            method=b"GET",
            target=b"/a/b?c=d",
            uri=b"/a/b?c=d",
            version=b"HTTP/1.1",
            fields=((b"Host", b"example.com"), (b"Accept", b"*/*")),
            framing=NO_BODY,
            contentLength=None,
            host=b"example.com",
            connection=frozenset(),
            expectContinue=False,
            upgrade=None,
            persistent=True,
        ),
    ),
    (
        "HTTP/1.0 without Host",
        head(b"GET / HTTP/1.0"),
        dict(version=b"HTTP/1.0", host=None, persistent=False),
    ),
    (
        "HTTP/1.0 keep-alive",
        head(b"GET / HTTP/1.0", b"Connection: Keep-Alive"),
        dict(connection=frozenset([b"keep-alive"]), persistent=True),
    ),
    (
        "Connection: close",
        head(GET, HOST, b"Connection: close"),
        dict(persistent=False),
    ),
    (
        "Connection options, empty elements, several lines",
        head(GET, HOST, b"Connection: , Keep-Alive,, TE", b"Connection: upgrade"),
        dict(connection=frozenset([b"keep-alive", b"te", b"upgrade"])),
    ),
    (
        "Content-Length",
        head(b"POST /p HTTP/1.1", HOST, b"Content-Length: 5"),
        dict(framing=LENGTH, contentLength=5),
    ),
    (
        "Content-Length 0",
        head(b"POST /p HTTP/1.1", HOST, b"Content-Length: 0"),
        dict(framing=LENGTH, contentLength=0),
    ),
    (
        "Content-Length with leading zeros",
        head(b"POST /p HTTP/1.1", HOST, b"Content-Length: 0005"),
        dict(framing=LENGTH, contentLength=5),
    ),
    (
        "the largest Content-Length",
        head(b"POST /p HTTP/1.1", HOST, b"Content-Length: 9223372036854775807"),
        dict(framing=LENGTH, contentLength=2**63 - 1),
    ),
    (
        "chunked",
        head(b"POST /p HTTP/1.1", HOST, b"Transfer-Encoding: chunked"),
        dict(framing=CHUNKED, contentLength=None),
    ),
    (
        "chunked in any case, with spaces",
        head(b"POST /p HTTP/1.1", HOST, b"Transfer-Encoding:  Chunked \t"),
        dict(framing=CHUNKED),
    ),
    (
        "Expect: 100-continue",
        head(b"POST /p HTTP/1.1", HOST, b"Expect: 100-Continue", b"Content-Length: 1"),
        dict(expectContinue=True),
    ),
    (
        "Expect: 100-continue on HTTP/1.0 is ignored",
        head(b"POST /p HTTP/1.0", b"Expect: 100-continue", b"Content-Length: 1"),
        dict(expectContinue=False),
    ),
    (
        "a websocket upgrade",
        head(GET, HOST, b"Connection: keep-alive, Upgrade", b"Upgrade: WebSocket"),
        dict(upgrade=b"websocket"),
    ),
    (
        "Upgrade without Connection: upgrade is no upgrade",
        head(GET, HOST, b"Upgrade: websocket"),
        dict(upgrade=None),
    ),
    (
        "Upgrade on HTTP/1.0 is ignored",
        head(b"GET / HTTP/1.0", b"Connection: upgrade", b"Upgrade: websocket"),
        dict(upgrade=None),
    ),
    (
        "absolute form: the authority is the host, the Host field replaced",
        head(b"GET http://Other.example:8080/p?q HTTP/1.1", HOST, b"X: y"),
        dict(
            target=b"http://Other.example:8080/p?q",
            uri=b"/p?q",
            host=b"Other.example:8080",
            fields=((b"Host", b"Other.example:8080"), (b"X", b"y")),
        ),
    ),
    (
        "absolute form without a path",
        head(b"GET https://a.example HTTP/1.1", HOST),
        dict(uri=b"/", host=b"a.example"),
    ),
    (
        "absolute form with a query and no path",
        head(b"GET HTTP://a.example?x=1 HTTP/1.1", HOST),
        dict(uri=b"/?x=1", host=b"a.example"),
    ),
    (
        "absolute form on HTTP/1.0 without Host",
        head(b"GET http://[::1]:81/x HTTP/1.0"),
        dict(uri=b"/x", host=b"[::1]:81", fields=()),
    ),
    (
        "OPTIONS *",
        head(b"OPTIONS * HTTP/1.1", HOST),
        dict(uri=b"*", target=b"*"),
    ),
    (
        "any token method",
        head(b"M-SEARCH! /x HTTP/1.1", HOST),
        dict(method=b"M-SEARCH!"),
    ),
    (
        "an IPv6 Host with a port",
        head(GET, b"Host: [2001:db8::1]:8080"),
        dict(host=b"[2001:db8::1]:8080"),
    ),
    (
        "an IPv4 Host, a percent-escape, an empty port",
        head(GET, b"Host: 10.0.0.1:"),
        dict(host=b"10.0.0.1:"),
    ),
    (
        "an empty Host",
        head(GET, b"Host:"),
        dict(host=b""),
    ),
    (
        "values without surrounding spaces and tabs; inner tabs, obs-text kept",
        head(GET, HOST, b"X-A: \t a\tb  c \t", b"X-B:caf\xc3\xa9", b"x-b:  "),
        dict(fields=((b"Host", b"example.com"), (b"X-A", b"a\tb  c"), (b"X-B", b"caf\xc3\xa9"), (b"x-b", b""))),
    ),
    (
        "repeated list fields other than the single ones",
        head(GET, HOST, b"Cookie: a=1", b"Accept: x", b"Cookie: b=2"),
        dict(fields=((b"Host", b"example.com"), (b"Cookie", b"a=1"), (b"Accept", b"x"), (b"Cookie", b"b=2"))),
    ),
    (
        "a request line of exactly the limit",
        head(b"GET /" + b"a" * (8192 - len(b"GET / HTTP/1.1")) + b" HTTP/1.1", HOST),
        dict(method=b"GET"),
    ),
    (
        "exactly 100 fields",
        head(GET, HOST, *[b"X-%d: v" % i for i in range(99)]),
        dict(method=b"GET"),
    ),
]

# (what, head, status) for heads that are refused.
REFUSED = [
    # Body framing (RFC 9112 6).
    ("Content-Length and Transfer-Encoding", head(GET, HOST, b"Content-Length: 5", b"Transfer-Encoding: chunked"), 400),
    ("Transfer-Encoding and Content-Length", head(GET, HOST, b"Transfer-Encoding: chunked", b"Content-Length: 0"), 400),
    ("two different Content-Length", head(GET, HOST, b"Content-Length: 5", b"Content-Length: 6"), 400),
    # RFC 9112 6.3 lets a recipient take identical repeats as one; nginx
    # refuses any repeat too.  Content-Length is read by the proxy and by
    # every hop behind it: a repeat is a client or an intermediary that
    # went wrong, and refusing costs a correct client nothing.
    ("two identical Content-Length", head(GET, HOST, b"Content-Length: 5", b"Content-Length: 5"), 400),
    ("a Content-Length list", head(GET, HOST, b"Content-Length: 5, 5"), 400),
    ("a non-numeric Content-Length", head(GET, HOST, b"Content-Length: five"), 400),
    ("a signed Content-Length", head(GET, HOST, b"Content-Length: +5"), 400),
    ("a negative Content-Length", head(GET, HOST, b"Content-Length: -1"), 400),
    ("a space inside Content-Length", head(GET, HOST, b"Content-Length: 1 2"), 400),
    ("a hex Content-Length", head(GET, HOST, b"Content-Length: 0x10"), 400),
    ("an empty Content-Length", head(GET, HOST, b"Content-Length:"), 400),
    ("Content-Length 2^63", head(GET, HOST, b"Content-Length: 9223372036854775808"), 400),
    ("Content-Length past 2^64", head(GET, HOST, b"Content-Length: 18446744073709551617"), 400),
    ("Content-Length of 20 digits", head(GET, HOST, b"Content-Length: 00000000000000000005"), 400),
    ("Transfer-Encoding gzip", head(GET, HOST, b"Transfer-Encoding: gzip"), 400),
    ("chunked not last", head(GET, HOST, b"Transfer-Encoding: chunked, gzip"), 400),
    ("chunked not last, across lines", head(GET, HOST, b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip"), 400),
    ("gzip then chunked", head(GET, HOST, b"Transfer-Encoding: gzip, chunked"), 501),
    ("chunked twice", head(GET, HOST, b"Transfer-Encoding: chunked, chunked"), 400),
    ("chunked twice, across lines", head(GET, HOST, b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"), 400),
    ("identity", head(GET, HOST, b"Transfer-Encoding: identity"), 400),
    ("an empty Transfer-Encoding", head(GET, HOST, b"Transfer-Encoding:"), 400),
    ("chunked with a parameter", head(GET, HOST, b"Transfer-Encoding: chunked;q=1"), 400),
    ("Transfer-Encoding on HTTP/1.0", head(b"POST / HTTP/1.0", b"Transfer-Encoding: chunked"), 400),
    # Line syntax (RFC 9112 2.2 and 5).
    ("obsolete line folding", head(GET, HOST, b"X-A: a", b" b"), 400),
    ("obsolete line folding with a tab", head(GET, HOST, b"X-A: a", b"\tb"), 400),
    ("whitespace before the first field", head(GET, b" Host: example.com"), 400),
    ("a bare CR in a value", head(GET, HOST, b"X-A: a\rb"), 400),
    ("a bare CR ending a line", head(GET, HOST + b"\r", b"X: y"), 400),
    ("a bare CR in the request line", head(b"GET /\r HTTP/1.1", HOST), 400),
    ("a bare LF ending a field line", head(GET, HOST + b"\nX: y"), 400),
    ("a bare LF ending the request line", GET + b"\n" + HOST, 400),
    ("a NUL in a value", head(GET, HOST, b"X-A: a\x00b"), 400),
    ("a NUL in a name", head(GET, HOST, b"X\x00A: b"), 400),
    ("a NUL in the method", head(b"G\x00T / HTTP/1.1", HOST), 400),
    ("a NUL in the target", head(b"GET /\x00 HTTP/1.1", HOST), 400),
    ("\\x01 in Host", head(GET, b"Host: a\x01b"), 400),
    ("\\x0b in a value", head(GET, HOST, b"X-A: a\x0bb"), 400),
    ("\\x7f in a value", head(GET, HOST, b"X-A: a\x7f"), 400),
    ("\\x1f in a value", head(GET, HOST, b"X-A: \x1f"), 400),
    ("a space before the colon", head(GET, b"Host : example.com"), 400),
    ("a tab before the colon", head(GET, HOST, b"X-A\t: b"), 400),
    ("a space in a name", head(GET, HOST, b"X A: b"), 400),
    ("a separator in a name", head(GET, HOST, b"X(A): b"), 400),
    ("a non-ASCII name", head(GET, HOST, b"X-\xc3\xa9: b"), 400),
    ("a line without a colon", head(GET, HOST, b"X-A b"), 400),
    ("an empty name", head(GET, HOST, b": b"), 400),
    # Host (RFC 9112 3.2).
    ("no Host on HTTP/1.1", head(GET, b"X: y"), 400),
    ("no Host on HTTP/1.1 with an absolute target", head(b"GET http://a/ HTTP/1.1"), 400),
    ("two Host", head(GET, HOST, b"Host: example.com"), 400),
    ("two Host, one empty", head(GET, HOST, b"host:"), 400),
    ("two Host on HTTP/1.0", head(b"GET / HTTP/1.0", HOST, HOST), 400),
    ("a space in Host", head(GET, b"Host: a b"), 400),
    ("a slash in Host", head(GET, b"Host: a/b"), 400),
    ("user information in Host", head(GET, b"Host: u@a"), 400),
    ("a bad IPv6 literal", head(GET, b"Host: [::g]"), 400),
    ("an unclosed IPv6 literal", head(GET, b"Host: [::1"), 400),
    ("a non-numeric port", head(GET, b"Host: a:http"), 400),
    ("a six-digit port", head(GET, b"Host: a:123456"), 400),
    ("a bad percent-escape", head(GET, b"Host: a%zz"), 400),
    ("non-ASCII in Host", head(GET, b"Host: caf\xc3\xa9.example"), 400),
    # The request target (RFC 9112 3.2).
    ("a fragment", head(b"GET /admin# HTTP/1.1", HOST), 400),
    ("a fragment inside", head(b"GET /img/secret.conf#.png HTTP/1.1", HOST), 400),
    ("a fragment in an absolute target", head(b"GET http://a/#x HTTP/1.1", HOST), 400),
    ("a space in the target", head(b"GET /a b HTTP/1.1", HOST), 400),
    ("a tab in the target", head(b"GET /a\tb HTTP/1.1", HOST), 400),
    ("\\x7f in the target", head(b"GET /a\x7f HTTP/1.1", HOST), 400),
    ("non-ASCII in the target", head(b"GET /caf\xc3\xa9 HTTP/1.1", HOST), 400),
    ("\\xb0 in the target", head(b"GET /\xb0 HTTP/1.1", HOST), 400),
    ("authority form without CONNECT", head(b"GET example.com:443 HTTP/1.1", HOST), 400),
    ("CONNECT", head(b"CONNECT example.com:443 HTTP/1.1", b"Host: example.com:443"), 501),
    ("CONNECT with a path", head(b"CONNECT / HTTP/1.1", HOST), 501),
    ("an asterisk without OPTIONS", head(b"GET * HTTP/1.1", HOST), 400),
    ("a relative target", head(b"GET a/b HTTP/1.1", HOST), 400),
    ("an absolute target with user information", head(b"GET http://u:p@a/ HTTP/1.1", HOST), 400),
    ("an absolute target without a host", head(b"GET http:///x HTTP/1.1", HOST), 400),
    ("an absolute target with only a port", head(b"GET http://:80/x HTTP/1.1", HOST), 400),
    ("an absolute target of another scheme", head(b"GET ftp://a/x HTTP/1.1", HOST), 400),
    ("an absolute target with a bad host", head(b"GET http://[::1/x HTTP/1.1", HOST), 400),
    # The request line (RFC 9112 3).
    ("HTTP/2.0", head(b"GET / HTTP/2.0", HOST), 505),
    # RFC 9110 2.5 would take 1.2 as 1.1; there is no HTTP/1.2, and Twisted
    # refuses it while h11 takes it: refused as an unsupported version.
    ("HTTP/1.2", head(b"GET / HTTP/1.2", HOST), 505),
    ("HTTP/0.9", head(b"GET / HTTP/0.9", HOST), 505),
    ("HTTP/3.0", head(b"GET / HTTP/3.0", HOST), 505),
    ("a version with junk", head(b"GET / HTTP/1.1x", HOST), 400),
    ("a lower-case version", head(b"GET / http/1.1", HOST), 400),
    ("a version without a dot", head(b"GET / HTTP/11", HOST), 400),
    ("a version of one digit", head(b"GET / HTTP/1", HOST), 400),
    ("no version", head(b"GET /", HOST), 400),
    ("a non-token method", head(b"GE(T / HTTP/1.1", HOST), 400),
    ("a non-ASCII method", head(b"G\xc3\x89T / HTTP/1.1", HOST), 400),
    ("no method", head(b" / HTTP/1.1", HOST), 400),
    ("two spaces", head(b"GET  / HTTP/1.1", HOST), 400),
    ("a trailing space", head(b"GET / HTTP/1.1 ", HOST), 400),
    ("a tab as separator", head(b"GET\t/ HTTP/1.1", HOST), 400),
    ("an empty head", b"", 400),
    # Limits.
    ("a request line over the limit", head(b"GET /" + b"a" * 8179 + b" HTTP/1.1", HOST), 414),
    ("a field line over the limit", head(GET, HOST, b"X: " + b"a" * 8190), 431),
    ("fields over the limit", head(GET, HOST, *[b"X: " + b"a" * 8000] * 5), 431),
    ("101 fields", head(GET, HOST, *[b"X-%d: v" % i for i in range(100)]), 431),
]


class ParseRequestHeadTests(SynchronousTestCase):
    """
    L{parseRequestHead} reads valid heads and refuses the others with the
    status the client gets.
    """

    def test_accepted(self):
        """
        Each valid head is read as expected.
        """
        for what, raw, expected in ACCEPTED:
            parsed = parseRequestHead(raw)
            for name, value in expected.items():
                self.assertEqual(getattr(parsed, name), value, (what, name))

    def test_refused(self):
        """
        Each invalid, ambiguous or oversized head is refused with its status.
        """
        for what, raw, status in REFUSED:
            error = self.assertRaises(HeadError, parseRequestHead, raw)
            self.assertEqual(error.status, status, (what, error.detail))

    def test_singleFields(self):
        """
        Every field an access rule, a route or the websocket handshake reads
        is refused when it appears twice, in any case.
        """
        self.assertEqual(
            SINGLE_FIELDS,
            {
                b"host",
                b"content-length",
                b"authorization",
                b"proxy-authorization",
                b"upgrade",
                b"origin",
                b"sec-websocket-key",
                b"sec-websocket-version",
            },
        )
        for name in SINGLE_FIELDS:
            raw = head(GET, HOST, name + b": 1", name.upper() + b": 1")
            error = self.assertRaises(HeadError, parseRequestHead, raw)
            self.assertEqual((error.status, error.detail), (400, "more than one %s field" % name.decode()))

    def test_details(self):
        """
        The detail of a refusal says what was wrong.
        """
        cases = [
            (head(b"GET /admin# HTTP/1.1", HOST), "a fragment (#) in the request target"),
            (head(GET, HOST, b"X: a", b" b"), "obsolete line folding"),
            (head(GET, b"Host : x"), "whitespace before the colon of a header field"),
            (head(GET, HOST, b"Content-Length: 18446744073709551617"), "invalid Content-Length '18446744073709551617'"),
            (head(GET), "an HTTP/1.1 request needs a Host field"),
            (head(GET, HOST, b"Authorization: a", b"authorization: b"), "more than one authorization field"),
            (head(b"GET / HTTP/2.0"), "only HTTP/1.0 and HTTP/1.1 are supported"),
            (head(b"CONNECT a:1 HTTP/1.1", b"Host: a:1"), "CONNECT is not supported"),
            (head(GET, HOST + b"\nX: y"), "a line ends in a bare LF"),
            (head(GET, HOST, b"X: \x00"), "a control byte in a header field value"),
        ]
        for raw, detail in cases:
            self.assertEqual(self.assertRaises(HeadError, parseRequestHead, raw).detail, detail)

    def test_limits(self):
        """
        Smaller limits are held to.
        """
        limits = HeadLimits(requestLine=20, fieldLine=10, fieldsSize=30, fieldCount=3)
        cases = [
            (head(b"GET /" + b"a" * 6 + b" HTTP/1.1", b"Host: a"), None),
            (head(b"GET /" + b"a" * 7 + b" HTTP/1.1", b"Host: a"), 414),
            (head(GET, b"Host: a", b"X: 1234567"), None),
            (head(GET, b"Host: a", b"X: 12345678"), 431),
            (head(GET, b"Host: a", b"X: 1", b"Y: 2"), None),
            (head(GET, b"Host: a", b"X: 1", b"Y: 2", b"Z: 3"), 431),
            (head(GET, b"Host: a", b"X: 123456", b"Y: 123456"), 431),
        ]
        for raw, status in cases:
            if status is None:
                parseRequestHead(raw, limits)
            else:
                self.assertEqual(self.assertRaises(HeadError, parseRequestHead, raw, limits).status, status, raw)

    def test_fieldsSmallerThanALine(self):
        """
        A limit on all fields below the one on a line is held to, by the
        parser and by the reader.
        """
        limits = HeadLimits(fieldsSize=20)
        raw = head(GET, b"Host: a", b"X-A: 0123456789")
        self.assertEqual(self.assertRaises(HeadError, parseRequestHead, raw, limits).status, 431)
        self.assertEqual(self.assertRaises(HeadError, HeadReader(limits).feed, raw + b"\r\n\r\n").status, 431)

    def test_defaultLimits(self):
        """
        The default limits are nginx's sizes and Apache's field count.
        """
        self.assertEqual(
            (DEFAULT_LIMITS.requestLine, DEFAULT_LIMITS.fieldLine, DEFAULT_LIMITS.fieldsSize, DEFAULT_LIMITS.fieldCount),
            (8192, 8192, 32768, 100),
        )

    def test_frozen(self):
        """
        A L{RequestHead} and L{HeadLimits} cannot be changed.
        """
        parsed = parseRequestHead(head(GET, HOST))
        self.assertRaises(AttributeError, setattr, parsed, "method", b"POST")
        self.assertRaises(AttributeError, setattr, DEFAULT_LIMITS, "fieldCount", 1)


class ErrorTests(SynchronousTestCase):
    """
    L{HeadError} and L{BodyError} are response errors that know their
    status; L{refusal} is the answer that goes with them.
    """

    def test_errors(self):
        """
        Each carries its status, reason phrase and detail.
        """
        cases = [
            (HeadError(400, "x"), 400, b"Bad Request"),
            (HeadError(414, "x"), 414, b"URI Too Long"),
            (HeadError(431, "x"), 431, b"Request Header Fields Too Large"),
            (HeadError(501, "x"), 501, b"Not Implemented"),
            (HeadError(505, "x"), 505, b"HTTP Version Not Supported"),
            (BodyError(400, "x"), 400, b"Bad Request"),
            (BodyError(413, "x"), 413, b"Content Too Large"),
        ]
        for error, status, phrase in cases:
            self.assertIsInstance(error, ResponseError)
            self.assertEqual((error.status, error.phrase, error.detail, str(error)), (status, phrase, "x", "x"))

    def test_refusal(self):
        """
        The answer names the status, says what was wrong, and closes.
        """
        self.assertEqual(
            refusal(HeadError(431, "more than 100 header fields")),
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: 65\r\n"
            b"Connection: close\r\n\r\n"
            b"431 Request Header Fields Too Large\n\nmore than 100 header fields\n",
        )


def feedPieces(reader, data, size):
    """
    Feed C{data} to C{reader} C{size} bytes at a time.

    @return: the first non-L{None} result of C{feed} with the bytes not yet
        fed added to its rest, or L{None}.
    """
    for start in range(0, len(data), size):
        found = reader.feed(data[start : start + size])
        if found is not None:
            return found[0], found[1] + data[start + size :]
    return None


# (what, bytes, (head, rest)) for what a HeadReader finds.
READS = [
    ("a head", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", (b"GET / HTTP/1.1\r\nHost: a", b"")),
    ("a head and a body", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nab",
     (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2", b"ab")),
    ("a head without fields", b"GET / HTTP/1.0\r\n\r\nGET", (b"GET / HTTP/1.0", b"GET")),
    ("leading empty lines", b"\r\n" * LEADING_EMPTY_LINES + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
     (b"GET / HTTP/1.1\r\nHost: a", b"")),
    ("two pipelined heads", b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
     (b"GET /1 HTTP/1.1\r\nHost: a", b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")),
    ("a head with a bare CR (for the parser to refuse)", b"GET / HTTP/1.1\r\nX: \r\r\n\r\n",
     (b"GET / HTTP/1.1\r\nX: \r", b"")),
]

# (what, bytes, status) for what a HeadReader refuses before the head ends.
EARLY = [
    ("a request line over the limit", b"GET /" + b"a" * 8200, 414),
    ("a request line over the limit, with its CRLF", b"GET /" + b"a" * 8179 + b" HTTP/1.1\r\n", 414),
    ("a field line over the limit", b"GET / HTTP/1.1\r\nX: " + b"a" * 8200, 431),
    ("a field line over the limit, with its CRLF", b"GET / HTTP/1.1\r\nX: " + b"a" * 8190 + b"\r\n", 431),
    ("fields over the limit", b"GET / HTTP/1.1\r\n" + (b"X: " + b"a" * 8000 + b"\r\n") * 4 + b"Y: " + b"a" * 800, 431),
    ("101 fields", b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 101, 431),
    ("too many empty lines", b"\r\n" * (LEADING_EMPTY_LINES + 1) + b"GET", 400),
    ("a bare LF", b"GET / HTTP/1.1\nHost: a", 400),
    ("a bare LF as a blank line", b"GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
    ("a bare LF first", b"\n", 400),
]


class HeadReaderTests(SynchronousTestCase):
    """
    L{HeadReader} finds the end of a head, however its bytes are cut, and
    refuses an oversized head before it ends.
    """

    def test_reads(self):
        """
        Each input gives the same head and rest whole, and fed 1, 2, 3, 7
        and 100 bytes at a time.
        """
        for what, data, expected in READS:
            for size in (len(data), 1, 2, 3, 7, 100):
                self.assertEqual(feedPieces(HeadReader(), data, size), expected, (what, size))

    def test_incomplete(self):
        """
        Until the blank line has come, there is no head.
        """
        reader = HeadReader()
        for piece in [b"GET / HTTP/1.1\r\n", b"Host: a\r\n", b"\r"]:
            self.assertIsNone(reader.feed(piece))
        self.assertEqual(reader.feed(b"\n"), (b"GET / HTTP/1.1\r\nHost: a", b""))

    def test_early(self):
        """
        An oversized head is refused with its status as soon as the bytes
        that put it over a limit come, whole or a byte at a time.
        """
        for what, data, status in EARLY:
            for size in (len(data), 1, 1000):
                reader = HeadReader()
                with self.assertRaises(HeadError) as caught:
                    feedPieces(reader, data, size)
                self.assertEqual(caught.exception.status, status, (what, size))

    def test_earlyAtOnce(self):
        """
        A request line is refused with 414 at the byte that puts it over the
        limit, before any CRLF.
        """
        reader = HeadReader()
        self.assertIsNone(reader.feed(b"GET /" + b"a" * (8192 - 5)))
        self.assertIsNone(reader.feed(b"\r"))
        error = self.assertRaises(HeadError, reader.feed, b"a")
        self.assertEqual(error.status, 414)

    def test_reused(self):
        """
        After a head, the reader reads the next one from the rest.
        """
        reader = HeadReader()
        first, rest = reader.feed(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n")
        self.assertEqual((first, rest), (b"GET /1 HTTP/1.1\r\nHost: a", b"GET /2 HTTP/1.1\r\n"))
        self.assertIsNone(reader.feed(rest))
        self.assertEqual(reader.feed(b"Host: b\r\n\r\n"), (b"GET /2 HTTP/1.1\r\nHost: b", b""))

    def test_limits(self):
        """
        A reader holds heads to the limits it was given.
        """
        limits = HeadLimits(requestLine=20, fieldLine=10, fieldsSize=30, fieldCount=3)
        cases = [
            (b"GET /" + b"a" * 7 + b" HTTP/1.1\r\n", 414),
            (b"GET / HTTP/1.1\r\nX: 12345678", 431),
            (b"GET / HTTP/1.1\r\nX: 1\r\nX: 1\r\nX: 1\r\nX: 1\r\n", 431),
            (b"GET / HTTP/1.1\r\nX: 123456\r\nX: 123456\r\nX: 1234567", 431),
        ]
        for data, status in cases:
            for size in (len(data), 1):
                with self.assertRaises(HeadError) as caught:
                    feedPieces(HeadReader(limits), data, size)
                self.assertEqual(caught.exception.status, status, (data, size))

    def test_readerThenParser(self):
        """
        Every accepted head of the parser's table, sent whole or a byte at a
        time, comes out of a reader unchanged.
        """
        for what, raw, _ in ACCEPTED:
            for size in (len(raw) + 4, 1):
                self.assertEqual(feedPieces(HeadReader(), raw + b"\r\n\r\n", size), (raw, b""), what)


class LengthDecoderTests(SynchronousTestCase):
    """
    L{LengthDecoder} hands on exactly the declared bytes, then the rest.
    """

    def decode(self, length, pieces, limit=None):
        """
        Feed C{pieces} to a decoder of C{length}.

        @return: C{(data pieces, rests)}.
        """
        data, rests = [], []
        decoder = LengthDecoder(length, data.append, rests.append, limit)
        for piece in pieces:
            decoder.dataReceived(piece)
        return data, rests

    def test_decode(self):
        """
        Pieces are handed on as they come; the finish callback gets what
        comes after the body.
        """
        cases = [
            (5, [b"hello"], [b"hello"], [b""]),
            (5, [b"he", b"llo"], [b"he", b"llo"], [b""]),
            (5, [b"he", b"lloGET"], [b"he", b"llo"], [b"GET"]),
            (0, [b""], [], [b""]),
            (0, [b"GET"], [], [b"GET"]),
            (3, [b"a"], [b"a"], []),
        ]
        for length, pieces, data, rests in cases:
            self.assertEqual(self.decode(length, pieces), (data, rests), (length, pieces))

    def test_limit(self):
        """
        A declared length over the limit is refused with 413 at once; one
        of the limit is taken.
        """
        error = self.assertRaises(BodyError, LengthDecoder, 11, print, print, 10)
        self.assertEqual((error.status, error.detail), (413, "the body is larger than 10 bytes"))
        self.assertEqual(self.decode(10, [b"a" * 10], limit=10), ([b"a" * 10], [b""]))

    def test_noMoreData(self):
        """
        A body that ends short is a 400; a whole one is not.
        """
        decoder = LengthDecoder(5, lambda data: None, lambda rest: None)
        decoder.dataReceived(b"abc")
        error = self.assertRaises(BodyError, decoder.noMoreData)
        self.assertEqual((error.status, error.detail), (400, "the body ended 2 bytes short"))
        decoder.dataReceived(b"de")
        decoder.noMoreData()

    def test_afterTheEnd(self):
        """
        Feeding a finished decoder is a programming error.
        """
        decoder = LengthDecoder(1, lambda data: None, lambda rest: None)
        decoder.dataReceived(b"a")
        self.assertRaises(RuntimeError, decoder.dataReceived, b"b")


# (what, body, data, trailers, rest) for chunked bodies that are taken.
CHUNKED_VALID = [
    ("one chunk", b"5\r\nhello\r\n0\r\n\r\n", b"hello", [], b""),
    ("two chunks and the next request", b"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\nGET", b"hello", [], b"GET"),
    ("no chunks", b"0\r\n\r\n", b"", [], b""),
    ("a last chunk of zeros", b"000\r\n\r\n", b"", [], b""),
    ("upper- and lower-case hex", b"A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n", b"0123456789" * 2, [], b""),
    ("16 hex digits", b"0000000000000005\r\nhello\r\n0\r\n\r\n", b"hello", [], b""),
    ("extensions", b"5;a;b=c;d=\"x; y=z\"\r\nhello\r\n0;last\r\n\r\n", b"hello", [], b""),
    ("trailers", b"1\r\na\r\n0\r\nX-T: 1\r\ny:\t 2 \r\n\r\nrest", b"a", [(b"X-T", b"1"), (b"y", b"2")], b"rest"),
    ("CRLF in the data", b"4\r\n\r\n\r\n\r\n0\r\n\r\n", b"\r\n\r\n", [], b""),
]

# (what, body) for chunked bodies refused with 400.
CHUNKED_INVALID = [
    ("a non-hex size", b"x\r\n"),
    ("an empty size", b"\r\n"),
    ("a signed size", b"+5\r\nhello\r\n"),
    ("a negative size", b"-5\r\nhello\r\n"),
    ("a space before the size", b" 5\r\nhello\r\n"),
    ("a space after the size", b"5 \r\nhello\r\n"),
    ("a 0x prefix", b"0x5\r\nhello\r\n"),
    ("17 hex digits", b"00000000000000005\r\nhello\r\n"),
    ("a size past 2^64", b"10000000000000001\r\n"),
    ("a size of 2^63", b"8000000000000000\r\n"),
    ("a size of 2^64-1", b"ffffffffffffffff\r\n"),
    ("data longer than the size", b"5\r\nhelloX\r\n0\r\n\r\n"),
    ("data shorter than the size", b"5\r\nhell\r\n0\r\n\r\n"),
    ("data followed by LF", b"5\r\nhello\n0\r\n\r\n"),
    ("data followed by CR junk", b"5\r\nhello\rX"),
    ("a bare LF after the size", b"5\nhello\r\n"),
    ("a bare CR in the size line", b"5\r;a\r\nhello\r\n"),
    ("a control byte in an extension", b"5;a\x01\r\nhello\r\n"),
    ("an extension without a name", b"5;=x\r\nhello\r\n"),
    ("an extension value with a space", b"5;a=b c\r\nhello\r\n"),
    # RFC 9112 7.1.1 allows whitespace (BWS) around ";" and "="; h11
    # refuses it and Twisted takes it, so proxyws refuses it.
    ("whitespace before an extension", b"5 ;a\r\nhello\r\n"),
    ("whitespace after the semicolon", b"5; a\r\nhello\r\n"),
    ("whitespace around the equals sign", b"5;a = b\r\nhello\r\n"),
    # A quoted-pair (a backslash escape) is in the grammar; Twisted refuses
    # it and h11 takes it, so proxyws refuses it.
    ("a backslash in a quoted extension", b"5;a=\"\\\"\"\r\nhello\r\n"),
    ("an unterminated quoted extension", b"5;a=\"b\r\nhello\r\n"),
    ("a size line over its limit", b"5;a=" + b"b" * 5000 + b"\r\n"),
    ("a size line over its limit before its CRLF", b"5;a=" + b"b" * 5000),
    ("obsolete folding in a trailer", b"0\r\nX: a\r\n b\r\n\r\n"),
    ("a trailer without a colon", b"0\r\nX a\r\n\r\n"),
    ("a space before a trailer's colon", b"0\r\nX : a\r\n\r\n"),
    ("a NUL in a trailer", b"0\r\nX: \x00\r\n\r\n"),
    ("a bare LF ending the trailers", b"0\r\nX: a\r\n\n"),
    ("a trailer line over its limit", b"0\r\nX: " + b"a" * 8200 + b"\r\n\r\n"),
    ("trailers over their limit", b"0\r\n" + b"X: y\r\n" * 101 + b"\r\n"),
]


class ChunkedDecoderTests(SynchronousTestCase):
    """
    L{ChunkedDecoder} reads the chunked coding strictly.
    """

    def decode(self, body, size=None, **kwargs):
        """
        Feed C{body} to a decoder, C{size} bytes at a time (all at once by
        default).

        @return: C{(data, trailers, rest)}; rest is L{None} while the body
            is not complete.
        """
        data, rests = [], []
        decoder = ChunkedDecoder(data.append, rests.append, **kwargs)
        size = size or len(body) or 1
        for start in range(0, len(body), size):
            decoder.dataReceived(body[start : start + size])
            if rests:
                return b"".join(data), decoder.trailers, rests[0] + body[start + size :]
        return b"".join(data), decoder.trailers, None

    def test_valid(self):
        """
        Each valid body decodes to its data, trailers and rest, however its
        bytes are cut.
        """
        for what, body, data, trailers, rest in CHUNKED_VALID:
            for size in (None, 1, 2, 3, 5):
                self.assertEqual(self.decode(body, size), (data, trailers, rest), (what, size))

    def test_invalid(self):
        """
        Each malformed body is refused with 400, whole or a byte at a time.
        """
        for what, body in CHUNKED_INVALID:
            for size in (None, 1):
                with self.assertRaises(BodyError) as caught:
                    self.decode(body, size)
                self.assertEqual(caught.exception.status, 400, (what, size))

    def test_pieces(self):
        """
        Data is handed on as it comes, without waiting for a whole chunk.
        """
        data = []
        decoder = ChunkedDecoder(data.append, lambda rest: None)
        decoder.dataReceived(b"a\r\nhel")
        decoder.dataReceived(b"lo")
        self.assertEqual(data, [b"hel", b"lo"])
        self.assertEqual(decoder.received, 5)

    def test_limit(self):
        """
        A chunk that would take the body over the limit is refused with 413
        before its data is handed on; a body of the limit is taken.
        """
        self.assertEqual(self.decode(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", limit=10)[0], b"helloworld")
        data = []
        decoder = ChunkedDecoder(data.append, lambda rest: None, limit=10)
        decoder.dataReceived(b"5\r\nhello\r\n")
        error = self.assertRaises(BodyError, decoder.dataReceived, b"6\r\nworld!\r\n")
        self.assertEqual((error.status, error.detail, data), (413, "the body is larger than 10 bytes", [b"hello"]))

    def test_extensionsBounded(self):
        """
        Extensions are bounded over the whole body, not only per line.
        """
        chunk = b"1;" + b"e" * 4000 + b"\r\na\r\n"
        self.decode(chunk * 16)
        error = self.assertRaises(BodyError, self.decode, chunk * 17)
        self.assertEqual(error.detail, "chunk extensions over 65536 bytes")

    def test_noMoreData(self):
        """
        A connection that ends before the last chunk is a 400.
        """
        decoder = ChunkedDecoder(lambda data: None, lambda rest: None)
        decoder.dataReceived(b"5\r\nhello\r\n")
        self.assertEqual(self.assertRaises(BodyError, decoder.noMoreData).status, 400)
        decoder.dataReceived(b"0\r\n\r\n")
        decoder.noMoreData()

    def test_afterTheEnd(self):
        """
        Feeding a finished decoder is a programming error.
        """
        decoder = ChunkedDecoder(lambda data: None, lambda rest: None)
        decoder.dataReceived(b"0\r\n\r\n")
        self.assertRaises(RuntimeError, decoder.dataReceived, b"x")

    def test_trailerLimits(self):
        """
        The trailer section is held to the limits given.
        """
        limits = HeadLimits(fieldLine=10, fieldsSize=30, fieldCount=2)
        self.assertEqual(self.decode(b"0\r\nA: 1\r\nB: 2\r\n\r\n", limits=limits)[1], [(b"A", b"1"), (b"B", b"2")])
        for body in [b"0\r\nA: 12345678\r\n\r\n", b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"]:
            self.assertEqual(self.assertRaises(BodyError, self.decode, body, limits=limits).status, 400)


class DecoderForTests(SynchronousTestCase):
    """
    L{decoderFor} picks the decoder a head's framing asks for.
    """

    def test_decoderFor(self):
        """
        No body: no decoder; a length: a L{LengthDecoder} of it; chunked: a
        L{ChunkedDecoder}; the limit goes with it.
        """
        data, rests = [], []
        plain = parseRequestHead(head(GET, HOST))
        self.assertIsNone(decoderFor(plain, data.append, rests.append))
        sized = parseRequestHead(head(b"POST / HTTP/1.1", HOST, b"Content-Length: 3"))
        decoder = decoderFor(sized, data.append, rests.append)
        decoder.dataReceived(b"abcGET")
        self.assertEqual((data, rests), ([b"abc"], [b"GET"]))
        self.assertEqual(self.assertRaises(BodyError, decoderFor, sized, data.append, rests.append, 2).status, 413)
        chunked = parseRequestHead(head(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked"))
        decoder = decoderFor(chunked, data.append, rests.append, limit=4)
        self.assertIsInstance(decoder, ChunkedDecoder)
        self.assertEqual(self.assertRaises(BodyError, decoder.dataReceived, b"5\r\n").status, 413)
