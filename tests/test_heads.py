"""
Tests for L{proxyws.heads}: the response-head codec, as tables.
"""

from twisted.trial.unittest import SynchronousTestCase

from proxyws.errors import BadResponse
from proxyws.heads import (
    CHUNKED,
    LENGTH,
    MAX_HEAD,
    NONE,
    UNTIL_CLOSE,
    encodeRequestHead,
    encodeResponseHead,
    findHeadEnd,
    mergeFields,
    parseResponseHead,
    responseFraming,
)

# Heads a backend may send -> (version, code, phrase, fields).
VALID = [
    (b"HTTP/1.1 200 OK", (b"HTTP/1.1", 200, b"OK", [])),
    (b"HTTP/1.1 204", (b"HTTP/1.1", 204, b"", [])),
    (b"HTTP/1.1 404 ", (b"HTTP/1.1", 404, b"", [])),
    (b"HTTP/1.0 302 Found here", (b"HTTP/1.0", 302, b"Found here", [])),
    (
        b"HTTP/1.1 200 OK\r\nX-A:  a b \r\nSet-Cookie: 1\r\nset-cookie:2",
        (b"HTTP/1.1", 200, b"OK", [(b"X-A", b"a b"), (b"Set-Cookie", b"1"), (b"set-cookie", b"2")]),
    ),
    (b"HTTP/1.1 101 Switching Protocols\r\nX-Tab: a\tb", (b"HTTP/1.1", 101, b"Switching Protocols", [(b"X-Tab", b"a\tb")])),
    (b"HTTP/1.1 599 Odd\r\nEmpty:", (b"HTTP/1.1", 599, b"Odd", [(b"Empty", b"")])),
    # Spaces and tabs around values are not theirs; inside, they are.
    (
        b"HTTP/1.1 200 OK\r\nA: \t \r\nB:\t x \t y\t \r\nC:z  \r\nD: \xff\xfe ",
        (b"HTTP/1.1", 200, b"OK", [(b"A", b""), (b"B", b"x \t y"), (b"C", b"z"), (b"D", b"\xff\xfe")]),
    ),
    (b"HTTP/1.1 200 OK\r\nX-Colon: a:b: \r\nx: ", (b"HTTP/1.1", 200, b"OK", [(b"X-Colon", b"a:b:"), (b"x", b"")])),
]

# Heads no proxy may relay: each was relayed, or answered differently on
# the websocket path, before the codec was shared.
INVALID = [
    b"HTTP/1.1 200 OK\r\nX-A: a\nInjected: 1",  # a bare LF in a value
    b"HTTP/1.1 200 OK\nX-A: a",  # a bare LF ending the status line
    b"HTTP/1.1 200 O\rK",  # a bare CR in the phrase
    b"HTTP/1.1 200 OK\r\nX A: b",  # a name that is not a token
    b"HTTP/1.1 200 OK\r\nX-A : b",  # whitespace before the colon
    b"HTTP/1.1 200 OK\r\n folded",  # obsolete line folding
    b"HTTP/1.1 200 OK\r\nNoColon",
    b"HTTP/1.1 200 OK\r\nX-A: \x00",
    b"HTTP/1.1 200 OK\r\nX-A: \x7f",
    b"HTTP/1.1 -1 Minus",
    b"HTTP/1.1 1_000 Underscore",
    b"HTTP/1.1 99999 Long",
    b"HTTP/1.1 099 Low",
    b"HTTP/1.1 600 High",
    b"HTTP/1.1 20 Short",
    b"HTTP/2.0 200 OK",
    b"HTTP/1.2 200 OK",
    b"ICY 200 OK",
    b"garbage",
    b"",
]

# (fields, method, code, version) -> (kind, length, persistent, declared).
FRAMING = [
    ([(b"Content-Length", b"5")], b"GET", 200, b"HTTP/1.1", (LENGTH, 5, True, None)),
    ([(b"Content-Length", b"0")], b"GET", 200, b"HTTP/1.1", (LENGTH, 0, True, None)),
    ([(b"Transfer-Encoding", b"chunked")], b"GET", 200, b"HTTP/1.1", (CHUNKED, None, True, None)),
    ([(b"Transfer-Encoding", b"Chunked")], b"GET", 200, b"HTTP/1.1", (CHUNKED, None, True, None)),
    ([], b"GET", 200, b"HTTP/1.1", (UNTIL_CLOSE, None, False, None)),
    ([(b"Content-Length", b"5")], b"GET", 200, b"HTTP/1.0", (LENGTH, 5, False, None)),
    (
        [(b"Content-Length", b"5"), (b"Connection", b"keep-alive")],
        b"GET", 200, b"HTTP/1.0", (LENGTH, 5, True, None),
    ),
    (
        [(b"Content-Length", b"5"), (b"Connection", b"Upgrade, close")],
        b"GET", 200, b"HTTP/1.1", (LENGTH, 5, False, None),
    ),
    ([(b"Content-Length", b"5")], b"HEAD", 200, b"HTTP/1.1", (NONE, None, True, 5)),
    ([], b"GET", 204, b"HTTP/1.1", (NONE, None, True, None)),
    ([(b"Content-Length", b"10")], b"GET", 304, b"HTTP/1.1", (NONE, None, True, None)),
]

# (fields, method, code, version): ambiguous framing, each relayed before.
BAD_FRAMING = [
    ([(b"Content-Length", b"5"), (b"Content-Length", b"6")], b"GET", 200, b"HTTP/1.1"),
    ([(b"Content-Length", b"5"), (b"Content-Length", b"5")], b"GET", 200, b"HTTP/1.1"),
    ([(b"Content-Length", b"5, 6")], b"GET", 200, b"HTTP/1.1"),
    ([(b"Content-Length", b"-1")], b"GET", 200, b"HTTP/1.1"),
    ([(b"Content-Length", b"+5")], b"GET", 200, b"HTTP/1.1"),
    ([(b"Content-Length", b"1" * 26)], b"GET", 200, b"HTTP/1.1"),
    ([(b"Content-Length", b"18446744073709551617")], b"GET", 200, b"HTTP/1.1"),
    ([(b"Content-Length", b"9223372036854775808")], b"GET", 200, b"HTTP/1.1"),
    ([(b"Content-Length", b"")], b"GET", 200, b"HTTP/1.1"),
    ([(b"Transfer-Encoding", b"gzip"), (b"Content-Length", b"5")], b"GET", 200, b"HTTP/1.1"),
    ([(b"Transfer-Encoding", b"gzip")], b"GET", 200, b"HTTP/1.1"),
    ([(b"Transfer-Encoding", b"gzip, chunked")], b"GET", 200, b"HTTP/1.1"),
    ([(b"Transfer-Encoding", b"chunked, chunked")], b"GET", 200, b"HTTP/1.1"),
    ([(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"5")], b"GET", 200, b"HTTP/1.1"),
    ([(b"Transfer-Encoding", b"chunked")], b"GET", 200, b"HTTP/1.0"),
    ([], b"GET", 101, b"HTTP/1.1"),
]


def head(fields, code=200, version=b"HTTP/1.1"):
    """
    A parsed head with C{fields}.
    """
    return parseResponseHead(encodeResponseHead(version, code, b"X", fields)[:-4])


class ParseTests(SynchronousTestCase):
    """
    L{parseResponseHead} reads valid heads and refuses the rest.
    """

    def test_valid(self):
        """
        Each valid head reads as the table says.
        """
        for raw, expected in VALID:
            parsed = parseResponseHead(raw)
            self.assertEqual(
                (parsed.version, parsed.code, parsed.phrase, parsed.fields), expected, raw
            )

    def test_invalid(self):
        """
        Each invalid head raises L{BadResponse}.
        """
        for raw in INVALID:
            self.assertRaises(BadResponse, parseResponseHead, raw)

    def test_roundTrip(self):
        """
        A head built by L{encodeResponseHead} reads back the same.
        """
        fields = [(b"A", b"1"), (b"a", b"2"), (b"Set-Cookie", b"x=y; Path=/")]
        raw = encodeResponseHead(b"HTTP/1.1", 201, b"Created", fields)
        self.assertTrue(raw.endswith(b"\r\n\r\n"))
        parsed = parseResponseHead(raw[:-4])
        self.assertEqual((parsed.code, parsed.phrase, parsed.fields), (201, b"Created", fields))

    def test_findHeadEnd(self):
        """
        L{findHeadEnd} finds the blank line, waits for more, and refuses a
        head over L{MAX_HEAD}.
        """
        self.assertEqual(findHeadEnd(b"HTTP/1.1 200 OK\r\n\r\nbody"), 15)
        self.assertEqual(findHeadEnd(b"HTTP/1.1 200 OK\r\n"), -1)
        self.assertRaises(BadResponse, findHeadEnd, b"x" * (MAX_HEAD + 1))
        self.assertRaises(BadResponse, findHeadEnd, b"x" * (MAX_HEAD + 1) + b"\r\n\r\n")

    def test_findHeadEndRefusesAnotherProtocol(self):
        """
        L{findHeadEnd} waits for the rest of a head only while what came
        can start a status line; bytes of another protocol (an SSH banner,
        a TLS alert) are refused at once, not waited on.
        """
        for start in [b"", b"H", b"HTTP/", b"HTTP/1.", b"HTTP/1.1 20", b"HTTP/1.0 200 OK\r\nA: b"]:
            self.assertEqual(findHeadEnd(start), -1, start)
        for start, text in [
            (b"SSH-2.0-OpenSSH_9.6\r\n", "not an HTTP/1.x response: b'SSH-2.0-OpenSSH_9.6\\r\\n'"),
            (b"\x15\x03\x03\x00\x02\x02\x46", "not an HTTP/1.x response: b'\\x15\\x03\\x03\\x00\\x02\\x02F'"),
            (b"http/1.1 200", "not an HTTP/1.x response: b'http/1.1 200'"),
            (b"HTTP/2 200", "not an HTTP/1.x response: b'HTTP/2 200'"),
        ]:
            error = self.assertRaises(BadResponse, findHeadEnd, start)
            self.assertEqual(str(error), text)


class FramingTests(SynchronousTestCase):
    """
    L{responseFraming} decides how a body ends, and refuses ambiguity.
    """

    def test_framing(self):
        """
        Each row's head is framed as the table says.
        """
        for fields, method, code, version, expected in FRAMING:
            framing = responseFraming(head(fields, code, version), method)
            self.assertEqual(
                (framing.kind, framing.length, framing.persistent, framing.declared),
                expected,
                (fields, method, code, version),
            )

    def test_ambiguous(self):
        """
        Each ambiguous head raises L{BadResponse}.
        """
        for fields, method, code, version in BAD_FRAMING:
            self.assertRaises(
                BadResponse, responseFraming, head(fields, code, version), method
            )

    def test_upgrade(self):
        """
        A 101 is an answer only to a request that asked for an upgrade.
        """
        self.assertEqual(responseFraming(head([], 101), b"GET", upgrading=True).kind, NONE)


class EncodeTests(SynchronousTestCase):
    """
    Heads proxyws writes.
    """

    def test_requestHead(self):
        """
        L{encodeRequestHead} writes each value on a line of its own, then
        the framing fields.
        """
        self.assertEqual(
            encodeRequestHead(
                b"POST", b"/x?y", [(b"Host", [b"b"]), (b"A", [b"1", b"2"])],
                ((b"Content-Length", b"3"),),
            ),
            b"POST /x?y HTTP/1.1\r\nHost: b\r\nA: 1\r\nA: 2\r\nContent-Length: 3\r\n\r\n",
        )

    def test_mergeFields(self):
        """
        The proxy's own fields replace the backend's of the same name and
        come after the rest, which keep their order.
        """
        relayed = [(b"A", b"1"), (b"Strict-Transport-Security", b"x"), (b"B", b"2")]
        own = [(b"strict-transport-security", [b"max-age=1"])]
        self.assertEqual(
            mergeFields(relayed, own),
            [(b"A", b"1"), (b"B", b"2"), (b"strict-transport-security", b"max-age=1")],
        )
        self.assertEqual(mergeFields(relayed, []), relayed)
