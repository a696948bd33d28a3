"""
Tests for L{proxyws.headers}: which headers are forwarded each way, what the
proxy adds, and how URLs in response headers are mapped back.
"""

from twisted.trial.unittest import SynchronousTestCase

from proxyws.headers import (
    connectionTokens, requestHeaders, responseFields, rewriteURL)

BACKEND = b"http://backend:8080"
FRONT = b"https://front.example"


def forward(items, **kwargs):
    """
    Call L{requestHeaders} with usual values, overridden by C{kwargs}.

    @param items: the client's headers as C{(name, values)} pairs.
    @return: the result of L{requestHeaders}.
    """
    arguments = dict(
        clientAddress=b"10.1.2.3", scheme=b"http",
        frontHost=b"front.example", frontPort=b"8080",
        backendHost=b"backend:8080", preserveHost=False)
    arguments.update(kwargs)
    return requestHeaders(items, **arguments)


def names(items):
    """
    The lower-cased names of C{(name, values)} pairs, in order.
    """
    return [name.lower() for name, _ in items]


def valuesOf(items, name):
    """
    The values of the one pair named C{name} (any case), or L{None}.
    """
    found = [values for n, values in items if n.lower() == name.lower()]
    assert len(found) <= 1, found
    return found[0] if found else None


class ConnectionTokensTests(SynchronousTestCase):
    """
    L{connectionTokens} lists the header names Connection values name.
    """

    def test_connectionTokens(self):
        """
        Tokens are split on commas, stripped and lower-cased.
        """
        cases = [
            (None, frozenset()),
            ([], frozenset()),
            ([b"close"], {b"close"}),
            ([b"Keep-Alive, X-Foo"], {b"keep-alive", b"x-foo"}),
            ([b"X-A", b" x-b ,X-C"], {b"x-a", b"x-b", b"x-c"}),
        ]
        for values, expected in cases:
            self.assertEqual(connectionTokens(values), expected, values)


class RequestHeadersTests(SynchronousTestCase):
    """
    L{requestHeaders}: what the backend receives.
    """

    def test_hopByHopRemoved(self):
        """
        Hop-by-hop headers, the headers Connection names and Proxy-*
        headers are not forwarded; end-to-end ones are.
        """
        items = [
            (b"Connection", [b"keep-alive, X-Secret", b"X-Other"]),
            (b"Keep-Alive", [b"timeout=5"]),
            (b"TE", [b"trailers"]),
            (b"Trailer", [b"X-T"]),
            (b"Transfer-Encoding", [b"chunked"]),
            (b"Upgrade", [b"websocket"]),
            (b"Proxy-Authorization", [b"Basic eA=="]),
            (b"Proxy-Connection", [b"keep-alive"]),
            (b"X-Secret", [b"s"]),
            (b"x-other", [b"o"]),
            (b"Accept", [b"*/*"]),
            (b"Content-Length", [b"3"]),
            (b"Authorization", [b"Bearer t"]),
        ]
        out = forward(items)
        for gone in [b"connection", b"keep-alive", b"te", b"trailer",
                     b"transfer-encoding", b"upgrade", b"proxy-authorization",
                     b"proxy-connection", b"x-secret", b"x-other"]:
            self.assertNotIn(gone, names(out), gone)
        for kept in [b"Accept", b"Content-Length", b"Authorization"]:
            self.assertIn((kept, dict(items)[kept]), out, kept)

    def test_namedBeforeConnection(self):
        """
        A header that Connection names is not forwarded when it comes
        before Connection either; the others keep their order.
        """
        out = forward([
            (b"X-Before", [b"1"]),
            (b"Accept", [b"*/*"]),
            (b"X-Kept", [b"k"]),
            (b"Connection", [b"keep-alive, x-before"]),
        ])
        self.assertEqual(out[1:3], [(b"Accept", [b"*/*"]), (b"X-Kept", [b"k"])])
        self.assertNotIn(b"x-before", names(out))

    def test_hopByHopAnyCase(self):
        """
        Header names are compared without regard to case.
        """
        out = forward([
            (b"CONNECTION", [b"X-FOO"]),
            (b"x-foo", [b"1"]),
            (b"transfer-ENCODING", [b"chunked"]),
            (b"PROXY-AUTHORIZATION", [b"x"]),
        ])
        self.assertEqual(names(out), [
            b"host", b"x-forwarded-for", b"x-forwarded-proto",
            b"x-forwarded-host", b"x-forwarded-port"])

    def test_addedHeaders(self):
        """
        Host names the backend and X-Forwarded-* describe the client's
        request, after the forwarded headers.
        """
        out = forward([(b"Accept", [b"*/*"])])
        self.assertEqual(out, [
            (b"Host", [b"backend:8080"]),
            (b"Accept", [b"*/*"]),
            (b"X-Forwarded-For", [b"10.1.2.3"]),
            (b"X-Forwarded-Proto", [b"http"]),
            (b"X-Forwarded-Host", [b"front.example"]),
            (b"X-Forwarded-Port", [b"8080"]),
        ])

    def test_forwardedForAppended(self):
        """
        The client's address is appended to an existing X-Forwarded-For
        chain, all of whose values are kept in order.
        """
        cases = [
            ([b"1.1.1.1"], b"1.1.1.1, 10.1.2.3"),
            ([b"1.1.1.1, 2.2.2.2"], b"1.1.1.1, 2.2.2.2, 10.1.2.3"),
            ([b"1.1.1.1", b"2.2.2.2"], b"1.1.1.1, 2.2.2.2, 10.1.2.3"),
        ]
        for values, expected in cases:
            out = forward([(b"x-forwarded-for", values)])
            self.assertEqual(
                valuesOf(out, b"X-Forwarded-For"), [expected], values)

    def test_clientForwardedHeadersReplaced(self):
        """
        A client's X-Forwarded-Proto, -Host and -Port and Host are replaced,
        never passed on beside the proxy's.
        """
        out = forward([
            (b"Host", [b"evil.example"]),
            (b"X-Forwarded-Proto", [b"https"]),
            (b"X-Forwarded-Host", [b"evil.example"]),
            (b"X-Forwarded-Port", [b"443"]),
        ], scheme=b"https", frontHost=b"front.example:8443",
            frontPort=b"8443")
        self.assertEqual(out, [
            (b"Host", [b"backend:8080"]),
            (b"X-Forwarded-For", [b"10.1.2.3"]),
            (b"X-Forwarded-Proto", [b"https"]),
            (b"X-Forwarded-Host", [b"front.example:8443"]),
            (b"X-Forwarded-Port", [b"8443"]),
        ])

    def test_noFrontHost(self):
        """
        Without a client Host there is no X-Forwarded-Host, and Host names
        the backend even when preserving.
        """
        for preserve in [False, True]:
            out = forward([], frontHost=None, preserveHost=preserve)
            self.assertIsNone(valuesOf(out, b"X-Forwarded-Host"), preserve)
            self.assertEqual(
                valuesOf(out, b"Host"), [b"backend:8080"], preserve)

    def test_preserveHost(self):
        """
        With preserveHost the backend sees the client's Host.
        """
        out = forward(
            [(b"Host", [b"front.example"])], preserveHost=True)
        self.assertEqual(out[0], (b"Host", [b"front.example"]))
        self.assertEqual(names(out).count(b"host"), 1)

    def test_repeatedHeadersKept(self):
        """
        Repeated values stay separate and in order, and headers keep their
        order and their case.
        """
        items = [
            (b"Cookie", [b"a=1", b"b=2"]),
            (b"x-Custom", [b"3", b"1", b"2"]),
            (b"Accept", [b"text/html", b"*/*"]),
        ]
        out = forward(items)
        self.assertEqual(out[1:4], items)

    def test_itemsNotModified(self):
        """
        The client's list is left as it was.
        """
        items = [(b"Connection", [b"close"]), (b"Accept", [b"*/*"])]
        copy = [(name, list(values)) for name, values in items]
        forward(items)
        self.assertEqual(items, copy)


class ResponseFieldsTests(SynchronousTestCase):
    """
    L{responseFields}: what the client receives.
    """

    def test_setCookieKeptSeparate(self):
        """
        Each Set-Cookie field stays a field of its own, in order, among the
        others.
        """
        fields = [
            (b"Set-Cookie", b"a=1; Path=/; Expires=Wed, 21 Oct 2015 07:28:00 GMT"),
            (b"X-A", b"1"),
            (b"Set-Cookie", b"b=2"),
            (b"set-cookie", b"a=3"),
        ]
        self.assertEqual(responseFields(fields, BACKEND, FRONT, (b"/", b"/")), fields)

    def test_hopByHopRemoved(self):
        """
        Hop-by-hop fields, those Connection names (in any of its fields) and
        Content-Length are not relayed; the others keep their order.
        """
        out = responseFields([
            (b"Content-Type", b"text/plain"),
            (b"Connection", b"close, X-Internal"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Trailer", b"X-T"),
            (b"TE", b"trailers"),
            (b"Upgrade", b"h2c"),
            (b"Proxy-Authenticate", b"Basic"),
            (b"Proxy-Connection", b"close"),
            (b"X-Internal", b"1"),
            (b"connection", b"X-Other"),
            (b"x-other", b"2"),
            (b"Content-Length", b"5"),
            (b"Date", b"x"),
        ], BACKEND, FRONT, (b"/", b"/"))
        self.assertEqual(out, [(b"Content-Type", b"text/plain"), (b"Date", b"x")])

    def test_namedBeforeConnection(self):
        """
        A field that Connection names is not relayed when it comes before
        Connection either; the others keep their order.
        """
        out = responseFields([
            (b"X-Before", b"1"),
            (b"Date", b"x"),
            (b"Location", b"/base/y"),
            (b"Connection", b"keep-alive, X-BEFORE"),
        ], BACKEND, FRONT, (b"/base/", b"/app/"))
        self.assertEqual(out, [(b"Date", b"x"), (b"Location", b"/app/y")])

    def test_urlHeadersRewritten(self):
        """
        Location, Content-Location and URI are mapped back, each field of
        each of them, in any case of the name; other headers are not.
        """
        out = responseFields([
            (b"Location", b"http://backend:8080/base/x"),
            (b"content-location", b"/base/y"),
            (b"content-location", b"/base/z"),
            (b"URI", b"<http://backend:8080/base/>"),
            (b"uri", b"http://backend:8080/base/u"),
            (b"Link", b"http://backend:8080/base/l"),
            (b"Refresh", b"/base/r"),
        ], BACKEND, FRONT, (b"/base/", b"/app/"))
        self.assertEqual(out, [
            (b"Location", b"https://front.example/app/x"),
            (b"content-location", b"/app/y"),
            (b"content-location", b"/app/z"),
            (b"URI", b"<http://backend:8080/base/>"),
            (b"uri", b"https://front.example/app/u"),
            (b"Link", b"http://backend:8080/base/l"),
            (b"Refresh", b"/base/r"),
        ])

    def test_reverseNoneUntouched(self):
        """
        Without a reverse mapping, URL headers pass unchanged.
        """
        fields = [
            (b"Location", b"http://backend:8080/base/x"),
            (b"Content-Location", b"/base/y"),
        ]
        self.assertEqual(responseFields(fields, BACKEND, FRONT, None), fields)


class RewriteURLTests(SynchronousTestCase):
    """
    L{rewriteURL} follows Apache's ProxyPassReverse.
    """

    def test_rewriteURL(self):
        """
        Each value, under each mapping, becomes the expected value.
        """
        base = (b"/base/", b"/app/")
        cases = [
            # Absolute URLs of the backend go to the front origin and prefix.
            (b"http://backend:8080/base/x?y=1#f", base,
             b"https://front.example/app/x?y=1#f"),
            (b"http://backend:8080/base/", base, b"https://front.example/app/"),
            (b"HTTP://BACKEND:8080/base/x", base, b"https://front.example/app/x"),
            (b"Http://Backend:8080/base/x", base, b"https://front.example/app/x"),
            (b"http://backend:8080/x", (b"/", b"/app/"),
             b"https://front.example/app/x"),
            (b"http://backend:8080", (b"/", b"/app/"),
             b"https://front.example/app/"),
            (b"http://backend:8080/x", (b"/", b"/"), b"https://front.example/x"),
            # The case of the path is the backend's to decide.
            (b"http://backend:8080/BASE/x", base, b"http://backend:8080/BASE/x"),
            # Outside the backend prefix: untouched.
            (b"http://backend:8080/other/x", base,
             b"http://backend:8080/other/x"),
            # Other origins: untouched.
            (b"https://backend:8080/base/x", base,
             b"https://backend:8080/base/x"),
            (b"http://backend:8081/base/x", base,
             b"http://backend:8081/base/x"),
            (b"http://backend/base/x", base, b"http://backend/base/x"),
            (b"http://other.example/base/x", base,
             b"http://other.example/base/x"),
            (b"http://backend:80800/base/x", base,
             b"http://backend:80800/base/x"),
            (b"http://backend:8080.evil/x", (b"", b"/app"),
             b"http://backend:8080.evil/x"),
            (b"//backend:8080/base/x", base, b"//backend:8080/base/x"),
            # Path-absolute under the backend prefix: to the front prefix.
            (b"/base/x?q", base, b"/app/x?q"),
            (b"/base/", base, b"/app/"),
            (b"/other/x", base, b"/other/x"),
            (b"/x", (b"/", b"/app/"), b"/app/x"),
            (b"/x", (b"", b"/app"), b"/app/x"),
            (b"/x", (b"/", b"/"), b"/x"),
            # Relative references and other forms: untouched.
            (b"x/y", base, b"x/y"),
            (b"?page=2", base, b"?page=2"),
            (b"", base, b""),
            (b"mailto:a@b", base, b"mailto:a@b"),
            # No mapping: untouched.
            (b"http://backend:8080/base/x", None, b"http://backend:8080/base/x"),
            (b"/base/x", None, b"/base/x"),
        ]
        for value, reverse, expected in cases:
            self.assertEqual(
                rewriteURL(value, BACKEND, FRONT, reverse), expected,
                (value, reverse))

    def test_backendWithoutPath(self):
        """
        With the mapping of a backend with no path, absolute URLs of the
        backend map back and other hosts stay as they are.
        """
        cases = [
            (b"http://b/x", b"https://f/app/x"),
            (b"http://b", b"https://f/app/"),
            (b"http://bad.example/x", b"http://bad.example/x"),
            (b"http://b:81/x", b"http://b:81/x"),
            (b"http://b@evil/x", b"http://b@evil/x"),
        ]
        for value, expected in cases:
            self.assertEqual(
                rewriteURL(value, b"http://b", b"https://f", (b"", b"/app")),
                expected, value)
