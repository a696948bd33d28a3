"""
Differential property tests of L{proxyws.framing} and L{proxyws.bodies}
against the two other HTTP/1.1 parsers at hand: Twisted's C{HTTPChannel}
(which proxyws used before) and h11.

For request heads taken from real clients and mutated byte by byte
(control bytes, CR, LF, spaces, colons, fragments inserted; lines doubled;
versions, methods, targets changed; Content-Length and Transfer-Encoding
variants added), and for heads generated from edge-case alphabets:

  - whenever proxyws takes a head, Twisted and h11 take it too and read
    the same method, target, version, header fields and body framing;
  - wherever Twisted and h11 read a head differently (one refuses it, or
    both take it and disagree), proxyws refuses it.

The same holds for chunked bodies, against h11 and Twisted's decoder.

Two readings are deliberately compared after what proxyws does first: the
empty lines before a request line that RFC 9112 2.2 lets a server skip
(Twisted skips one, h11 none) are taken off before the other two read the
bytes; and for an absolute-form target, whose authority replaces the Host
field (RFC 9112 3.2.2), the others' Host value is replaced the same way.

Hypothesis runs a bounded number of examples, derandomized, so that a run
is reproducible and takes a few seconds.
"""

import io

import h11
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import http

from proxyws.bodies import ChunkedDecoder
from proxyws.errors import BodyError, HeadError
from proxyws.framing import (
    CHUNKED,
    LEADING_EMPTY_LINES,
    LENGTH,
    HeadReader,
    parseRequestHead,
)

# Heads as real clients send them (without the blank line).
CORPUS = [
    b"GET /app/index.html?x=1 HTTP/1.1\r\nHost: www.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
    b"Connection: keep-alive\r\nCookie: session=abc123; theme=dark\r\nUpgrade-Insecure-Requests: 1",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*",
    b"POST /login HTTP/1.1\r\nHost: app.example\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: 27\r\nOrigin: https://app.example",
    b"PUT /upload HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n"
    b"Expect: 100-continue\r\nContent-Type: application/octet-stream",
    b"GET /ws/socket?id=1 HTTP/1.1\r\nHost: app.example:443\r\nConnection: Upgrade\r\n"
    b"Pragma: no-cache\r\nUpgrade: websocket\r\nOrigin: https://app.example\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
    b"GET /file.tar.gz HTTP/1.0\r\nUser-Agent: Wget/1.21.4\r\nAccept: */*\r\n"
    b"Accept-Encoding: identity\r\nHost: mirror.example\r\nConnection: Keep-Alive",
    b"GET http://proxy.example/path?q=1 HTTP/1.1\r\nHost: proxy.example\r\nAccept: */*",
    b"OPTIONS * HTTP/1.1\r\nHost: example.com",
    b"GET /admin/ HTTP/1.1\r\nHost: example.com\r\nAuthorization: Basic YWxpY2U6d29uZGVybGFuZA==",
    b"POST /app/__sockjs__/000/abcdef/xhr_send HTTP/1.1\r\nHost: shiny.example\r\n"
    b"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: 0\r\n"
    b"Referer: https://shiny.example/app/\r\nX-Requested-With: XMLHttpRequest",
    b"POST /x HTTP/1.0\r\nContent-Length: 3\r\nX-Note: caf\xc3\xa9\tbar",
    b"DELETE /api/routes/user/alice HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n"
    b"Authorization: token abc\r\nContent-Length: 0\r\nConnection: close",
]

# Bytes to insert, and fields to add, that parsers tend to read differently.
INSERTS = [
    b"\r", b"\n", b"\r\n", b"\r\n ", b"\r\n\t", b"\x00", b"\x01", b"\x0b", b"\x7f", b"\x80",
    b"\xb0", b"\xff", b" ", b"\t", b":", b"#", b",", b";", b"@", b"/", b"?", b"*", b"[",
    b"]", b"\"", b"\\", b"0", b"-", b"+",
]
FIELDS = [
    b"Content-Length: 5", b"Content-Length: 0", b"Content-Length: 05", b"Content-Length: 5, 5",
    b"Content-Length: +5", b"Content-Length: -1", b"Content-Length: 5 5", b"Content-Length:",
    b"Content-Length: 18446744073709551617", b"Content-Length: 9223372036854775807",
    b"Content-Length: 000000000000000000001", b"Content-Length : 5", b" Content-Length: 5",
    b"Transfer-Encoding: chunked", b"Transfer-Encoding: Chunked", b"Transfer-Encoding: gzip",
    b"Transfer-Encoding: gzip, chunked", b"Transfer-Encoding: chunked, chunked",
    b"Transfer-Encoding: identity", b"Transfer-Encoding: chunked ", b"Transfer-Encoding:\tchunked",
    b"Transfer-Encoding : chunked", b"Transfer-Encoding: \x0bchunked", b"Transfer-Encoding: chunked\x00",
    b"Host: other.example", b"Host:", b"Host: a b", b"Host: [::1]:80", b"Host: a:99999",
    b"Connection: close", b"Connection: keep-alive", b"Connection: upgrade", b"Upgrade: h2c",
    b"Expect: 100-continue", b"Authorization: Basic Ym9iOmJ1aWxkZXI=", b"X-Fold: a",
]
VERSIONS = [b"HTTP/1.0", b"HTTP/1.1", b"HTTP/1.2", b"HTTP/2.0", b"HTTP/0.9", b"http/1.1", b"HTTP/1.1 ", b"HTTP/1"]
METHODS = [b"GET", b"POST", b"OPTIONS", b"CONNECT", b"M-SEARCH", b"gEt", b"G T", b"GET\x00", b"G(T", b""]
TARGETS = [
    b"/", b"/a?b#c", b"*", b"example.com:443", b"http://h.example/x", b"http://h.example",
    b"https://u@h.example/", b"http:///x", b"/a%20b", b"/\x7f", b"/\xb0", b"/caf\xc3\xa9", b"a/b",
    b"/a b", b"HTTP://H.EXAMPLE:8/?q", b"//x", b"/?",
]


def _lines(raw):
    return raw.split(b"\r\n")


def _insert(draw, raw):
    at = draw(st.integers(0, len(raw)))
    return raw[:at] + draw(st.sampled_from(INSERTS)) + raw[at:]


def _delete(draw, raw):
    if not raw:
        return raw
    at = draw(st.integers(0, len(raw) - 1))
    return raw[:at] + raw[at + 1 :]


def _duplicateLine(draw, raw):
    lines = _lines(raw)
    if len(lines) < 2:
        return raw
    line = lines[draw(st.integers(1, len(lines) - 1))]
    lines.insert(draw(st.integers(1, len(lines))), line)
    return b"\r\n".join(lines)


def _addField(draw, raw):
    lines = _lines(raw)
    lines.insert(draw(st.integers(1, len(lines))), draw(st.sampled_from(FIELDS)))
    return b"\r\n".join(lines)


def _requestLine(draw, raw, index, choices):
    lines = _lines(raw)
    parts = lines[0].split(b" ")
    if len(parts) == 3:
        parts[index] = draw(st.sampled_from(choices))
        lines[0] = b" ".join(parts)
    return b"\r\n".join(lines)


def _version(draw, raw):
    return _requestLine(draw, raw, 2, VERSIONS)


def _method(draw, raw):
    return _requestLine(draw, raw, 0, METHODS)


def _target(draw, raw):
    return _requestLine(draw, raw, 1, TARGETS)


def _recase(draw, raw):
    lines = _lines(raw)
    index = draw(st.integers(0, len(lines) - 1))
    lines[index] = draw(st.sampled_from([lines[index].upper(), lines[index].lower()]))
    return b"\r\n".join(lines)


def _leadingLine(draw, raw):
    return b"\r\n" * draw(st.integers(1, LEADING_EMPTY_LINES + 1)) + raw


MUTATORS = [_insert, _insert, _insert, _delete, _duplicateLine, _addField, _addField, _version, _method, _target, _recase, _leadingLine]


@st.composite
def mutatedHeads(draw):
    """
    A head of the corpus with one to three mutations.
    """
    raw = draw(st.sampled_from(CORPUS))
    for _ in range(draw(st.integers(1, 3))):
        raw = draw(st.sampled_from(MUTATORS))(draw, raw)
    return raw


# Pieces of generated heads: each alphabet mixes valid bytes with the
# bytes parsers disagree on.
_TOKEN_BYTES = b"abcXYZ09-!#$%&'*+.^_`|~"
_EDGE_BYTES = b" \t:\x00\x01\x7f\x80\xff\r\n,;\"@/"


def _word(alphabet, minSize=0, maxSize=12):
    return st.lists(st.sampled_from([bytes([b]) for b in alphabet]), min_size=minSize, max_size=maxSize).map(b"".join)


_names = st.one_of(
    st.sampled_from([b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"Upgrade", b"Expect", b"X-A"]),
    _word(_TOKEN_BYTES, 1),
    _word(_TOKEN_BYTES + _EDGE_BYTES, 0, 6),
)
_values = st.one_of(
    st.sampled_from([b"example.com", b"5", b"chunked", b"close", b"upgrade", b"100-continue", b""]),
    _word(b"abc 019\t" + _EDGE_BYTES, 0, 10),
)


@st.composite
def generatedHeads(draw):
    """
    A head built from edge-case methods, targets, versions and fields.
    """
    method = draw(st.one_of(st.sampled_from(METHODS), _word(_TOKEN_BYTES + b" (", 1, 6)))
    target = draw(st.one_of(st.sampled_from(TARGETS), _word(b"/abc?=%" + _EDGE_BYTES + b"#", 1, 8)))
    version = draw(st.sampled_from(VERSIONS))
    fields = draw(st.lists(st.tuples(_names, _values, st.sampled_from([b":", b": ", b" : ", b":\t"])), max_size=6))
    if draw(st.booleans()):
        fields.insert(0, (b"Host", b"example.com", b": "))
    lines = [method + b" " + target + b" " + version]
    lines.extend(name + colon + value for name, value, colon in fields)
    return b"\r\n".join(lines)


class _Recorder(http.Request):
    """
    Notes what Twisted read of a head once all of it is in.
    """

    def gotLength(self, length):
        """
        Record the request line, the fields and the body length.
        """
        channel = self.channel
        fields = [(name.lower(), value) for name, values in self.requestHeaders.getAllRawHeaders() for value in values]
        channel.seen = (channel._command, channel._path, channel._version, fields, length)
        # Where the body goes (Twisted's own makes a file for a large one).
        self.content = io.BytesIO()

    def process(self):
        """
        Nothing to do.
        """


def twistedReads(data):
    """
    What Twisted's C{HTTPChannel} reads of a request head.

    @return: C{(method, target, version, fields, length)} with fields as
        Twisted groups them (names lower-cased) and length L{None} for
        chunked, or L{None} when it refuses the head.
    """
    channel = http.HTTPChannel()
    channel.requestFactory = _Recorder
    # The limits are this module's own business; compare what is read.
    channel.totalHeadersSize = 1 << 20
    channel.seen = None
    channel.makeConnection(StringTransport())
    channel.dataReceived(data)
    return channel.seen


def h11Reads(data):
    """
    What h11 reads of a request head.

    @return: C{(method, target, version, fields, length)} with fields in
        order (names lower-cased) and length L{None} for chunked, or L{None}
        when it refuses the head.
    """
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
    try:
        connection.receive_data(data)
        event = connection.next_event()
    except h11.RemoteProtocolError:
        return None
    if not isinstance(event, h11.Request):
        return None
    reader = connection._reader
    length = None if type(reader).__name__ == "ChunkedReader" else reader._remaining
    return (event.method, event.target, b"HTTP/" + event.http_version, list(event.headers), length)


def grouped(fields):
    """
    C{(name, value)} fields grouped by name as Twisted's C{Headers} keeps
    them: names in order of first appearance, each with its values in order.
    """
    groups = {}
    for name, value in fields:
        groups.setdefault(name, []).append(value)
    return [(name, value) for name, values in groups.items() for value in values]


def normalized(reading):
    """
    A reading of Twisted or h11 in one shape: fields grouped, the
    Transfer-Encoding value lower-cased (h11 lower-cases it).
    """
    if reading is None:
        return None
    method, target, version, fields, length = reading
    fields = [(n, v.lower() if n == b"transfer-encoding" else v) for n, v in fields]
    return method, target, version, grouped(fields), length


def proxywsReads(raw):
    """
    What proxyws reads of C{raw} followed by a blank line.

    @return: C{(head, bytes for the others)}: the L{RequestHead} or L{None}
        when it refuses; the bytes without the empty lines it skipped.
    """
    data = raw + b"\r\n\r\n"
    skipped = 0
    while data[:2] == b"\r\n" and skipped < LEADING_EMPTY_LINES:
        data, skipped = data[2:], skipped + 1
    try:
        found = HeadReader().feed(raw + b"\r\n\r\n")
        return (None if found is None else parseRequestHead(found[0])), data
    except HeadError:
        return None, data


def asReading(head, oracle):
    """
    A L{RequestHead} as C{oracle} (a reading of Twisted or h11) would read
    it: lower-cased names, the others' Host replaced by the authority of an
    absolute-form target.
    """
    fields = [(name.lower(), value) for name, value in head.fields]
    length = {CHUNKED: None, LENGTH: head.contentLength}.get(head.framing, 0)
    if head.uri != head.target and head.target != b"*":
        oracle = oracle[:3] + ([(n, head.host if n == b"host" else v) for n, v in oracle[3]],) + oracle[4:]
    return (head.method, head.target, head.version, fields, length), oracle


class DifferentialHeadTests(SynchronousTestCase):
    """
    proxyws takes a head only if Twisted and h11 take it and read it alike.
    """

    def check(self, raw):
        """
        The two properties for one head.
        """
        head, data = proxywsReads(raw)
        twisted, h11Reading = twistedReads(data), h11Reads(data)
        if head is not None:
            self.assertIsNotNone(twisted, "proxyws takes what Twisted refuses: %r" % (raw,))
            self.assertIsNotNone(h11Reading, "proxyws takes what h11 refuses: %r" % (raw,))
            ours, theirs = asReading(head, h11Reading)
            self.assertEqual(normalized(ours), normalized(theirs), raw)
            ours, theirs = asReading(head, twisted)
            self.assertEqual(normalized(ours), normalized(theirs), raw)
        if normalized(twisted) != normalized(h11Reading):
            self.assertIsNone(head, "Twisted and h11 disagree, proxyws takes it: %r" % (raw,))

    def test_corpus(self):
        """
        The heads of the corpus are taken, and read as the others read them.
        """
        for raw in CORPUS:
            self.assertIsNotNone(proxywsReads(raw)[0], raw)
            self.check(raw)

    @settings(max_examples=1500, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(mutatedHeads())
    def test_mutated(self, raw):
        """
        Mutated real-world heads.
        """
        self.check(raw)

    @settings(max_examples=1000, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(generatedHeads())
    def test_generated(self, raw):
        """
        Heads generated from edge-case alphabets.
        """
        self.check(raw)

    def test_disagreements(self):
        """
        Heads that Twisted and h11 read differently, each refused.
        """
        cases = [
            b"GET / HTTP/1.1\r\nX: y",  # no Host: h11 refuses
            b"GET /\x7f HTTP/1.1\r\nHost: a",  # Twisted takes DEL in the target
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b",  # h11 refuses
            b"GET / HTTP/1.2\r\nHost: a",  # h11 takes 1.2
            b"GET / HTTP/1.1\r\nHost: a\nX: y",  # h11 takes a bare LF
            b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity",  # Twisted ignores it
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 000000000000000000001",
        ]
        for raw in cases:
            head, data = proxywsReads(raw)
            self.assertNotEqual(normalized(twistedReads(data)), normalized(h11Reads(data)), raw)
            self.assertIsNone(head, raw)
            self.check(raw)

    def test_stricterThanBoth(self):
        """
        Heads that Twisted and h11 both take, and read alike, that proxyws
        refuses.
        """
        cases = [
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b",  # obsolete line folding
            b"GET /admin# HTTP/1.1\r\nHost: a",  # a fragment
            b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: a\r\nAuthorization: b",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551617",
            b"GET / HTTP/1.1\r\nHost: a\x01",
            b"GET / HTTP/1.1\r\nHost: a/b",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked",
            b"GET * HTTP/1.1\r\nHost: a",
            b"CONNECT a:443 HTTP/1.1\r\nHost: a:443",
            b"GET a/b HTTP/1.1\r\nHost: a",
        ]
        for raw in cases:
            head, data = proxywsReads(raw)
            self.assertIsNotNone(twistedReads(data), raw)
            self.assertEqual(normalized(twistedReads(data)), normalized(h11Reads(data)), raw)
            self.assertIsNone(head, raw)


# Chunk extensions and trailer sections for generated chunked bodies.
EXTENSIONS = [b"", b"", b";a", b";a=b", b" ; a = \"b c\"", b";a=\"\\\"\"", b";", b";a b", b";\x00", b" "]
TRAILERS = [b"", b"", b"X-T: 1\r\n", b"X-T: 1\r\nY: 2\r\n", b"X-T : 1\r\n", b" X: 1\r\n", b"X\r\n", b"X: \x00\r\n"]
SIZES = ["%x", "%X", "0%x", "00%x", " %x", "%x ", "+%x", "0x%x"]


@st.composite
def chunkedBodies(draw):
    """
    A chunked body of a few chunks, sizes written variously, extensions
    and trailers, perhaps followed by the next request, perhaps mutated.
    """
    parts = []
    for chunk in draw(st.lists(st.binary(min_size=1, max_size=20), max_size=4)):
        size = (draw(st.sampled_from(SIZES)) % len(chunk)).encode("ascii")
        parts.append(size + draw(st.sampled_from(EXTENSIONS)) + b"\r\n" + chunk + b"\r\n")
    parts.append(b"0" * draw(st.integers(1, 3)) + draw(st.sampled_from(EXTENSIONS)) + b"\r\n")
    parts.append(draw(st.sampled_from(TRAILERS)) + b"\r\n")
    parts.append(draw(st.sampled_from([b"", b"GET / HTTP/1.1\r\n"])))
    body = b"".join(parts)
    for _ in range(draw(st.integers(0, 2))):
        body = draw(st.sampled_from([_insert, _delete]))(draw, body)
    return body


def proxywsDecodes(body, cuts=()):
    """
    What L{ChunkedDecoder} makes of C{body}, fed in pieces cut at C{cuts}.

    @return: C{(data, trailers, rest)}, L{None} while incomplete, or
        C{"error"}.
    """
    data, rests = [], []
    decoder = ChunkedDecoder(data.append, rests.append)
    bounds = [0, *sorted(set(cuts)), len(body)]
    rest = b""
    try:
        for start, end in zip(bounds, bounds[1:]):
            if rests:
                rest = body[start:]
                break
            decoder.dataReceived(body[start:end])
    except BodyError:
        return "error"
    if not rests:
        return None
    return b"".join(data), [(n.lower(), v) for n, v in decoder.trailers], rests[0] + rest


def h11Decodes(body):
    """
    What h11 makes of C{body} as the body of a chunked request.

    @return: C{(data, trailers, rest)}, L{None} while incomplete, or
        C{"error"}.
    """
    connection = h11.Connection(h11.SERVER)
    data = []
    try:
        connection.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        connection.next_event()
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                return None
            if isinstance(event, h11.EndOfMessage):
                return b"".join(data), list(event.headers), connection.trailing_data[0]
            data.append(bytes(event.data))
    except h11.RemoteProtocolError:
        return "error"


def twistedDecodes(body):
    """
    What Twisted's private chunked decoder makes of C{body}.

    @return: C{(data, rest)}, L{None} while incomplete, or C{"error"}.
    """
    data, rests = [], []
    decoder = http._ChunkedTransferDecoder(data.append, rests.append)
    try:
        decoder.dataReceived(body)
    except http._MalformedChunkedDataError:
        return "error"
    return (b"".join(data), rests[0]) if rests else None


class DifferentialChunkedTests(SynchronousTestCase):
    """
    proxyws completes a chunked body only where h11 and Twisted complete it
    alike, and reads it the same however its bytes are cut.
    """

    @settings(max_examples=1000, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(chunkedBodies(), st.lists(st.integers(0, 200), max_size=4))
    def test_chunked(self, body, cuts):
        """
        Generated and mutated chunked bodies.
        """
        ours = proxywsDecodes(body)
        self.assertEqual(proxywsDecodes(body, [c for c in cuts if c < len(body)]), ours, body)
        theirs, twisted = h11Decodes(body), twistedDecodes(body)
        if isinstance(ours, tuple):
            self.assertEqual(ours, theirs, body)
            self.assertEqual((ours[0], ours[2]), twisted, body)
        if not isinstance(theirs, tuple) or not isinstance(twisted, tuple) or theirs[::2] != twisted:
            self.assertFalse(isinstance(ours, tuple), body)
