"""
Tests for L{proxyws.affinity}: SockJS and Shiny Server session keys, the
request view, the hash key and the affinity cookie.
"""

from twisted.trial.unittest import SynchronousTestCase

from proxyws.affinity import (
    SOCKJS_TRANSPORTS,
    SelectionRequest,
    parseCookies,
    requestKey,
    selectionRequest,
    setCookieValue,
    sockjsKey,
    stripCookie,
)
from proxyws.values import CookieSettings, HashKey

# A robust id as shiny-server-client makes them: 18 letters and digits.
ROBUST = b"Xq3Lr8ZkP0aBcD1eF2"

# Request paths as shiny-server-client and the SockJS client build them,
# and the session key of each.  The SockJS part is <server>/<session>/
# <transport>, the parameters in front of it n=, o=, t=, w= in that order.
SOCKJS_PATHS = [
    # Shiny Server: the first connection of a robust id, every transport.
    (b"/app/__sockjs__/n=" + ROBUST + b"/861/lqtq3eb5/websocket", b"r:" + ROBUST),
    (b"/app/__sockjs__/n=" + ROBUST + b"/861/lqtq3eb5/xhr_streaming", b"r:" + ROBUST),
    (b"/app/__sockjs__/n=" + ROBUST + b"/861/lqtq3eb5/xhr", b"r:" + ROBUST),
    (b"/app/__sockjs__/n=" + ROBUST + b"/861/lqtq3eb5/xhr_send", b"r:" + ROBUST),
    (b"/app/__sockjs__/n=" + ROBUST + b"/861/lqtq3eb5/eventsource", b"r:" + ROBUST),
    (b"/app/__sockjs__/n=" + ROBUST + b"/861/lqtq3eb5/htmlfile", b"r:" + ROBUST),
    (b"/app/__sockjs__/n=" + ROBUST + b"/861/lqtq3eb5/jsonp_send", b"r:" + ROBUST),
    # Its SockJS info request carries the id too.
    (b"/app/__sockjs__/n=" + ROBUST + b"/info", b"r:" + ROBUST),
    # The reconnect: a new SockJS session, o= and the same id.
    (b"/app/__sockjs__/o=" + ROBUST + b"/112/v0cm2xq4/websocket", b"r:" + ROBUST),
    (b"/app/__sockjs__/o=" + ROBUST + b"/112/v0cm2xq4/xhr_send", b"r:" + ROBUST),
    # Shiny Server Pro / RStudio Connect: token and worker; the worker wins.
    (b"/app/__sockjs__/n=" + ROBUST + b"/t=4f0a9c/w=9b2e11/861/lqtq3eb5/xhr", b"w:9b2e11"),
    (b"/app/__sockjs__/o=" + ROBUST + b"/t=77aa01/w=9b2e11/112/v0cm2xq4/websocket", b"w:9b2e11"),
    (b"/app/__sockjs__/t=4f0a9c/w=9b2e11/861/lqtq3eb5/xhr_send", b"w:9b2e11"),
    (b"/app/__sockjs__/w=9b2e11/info", b"w:9b2e11"),
    # A token alone, or an empty worker, leaves the robust id.
    (b"/app/__sockjs__/n=" + ROBUST + b"/t=4f0a9c/861/lqtq3eb5/xhr", b"r:" + ROBUST),
    (b"/app/__sockjs__/n=" + ROBUST + b"/w=/861/lqtq3eb5/xhr", b"r:" + ROBUST),
    # Shiny behind a nested path, and at the root.
    (b"/users/jo/apps/hist/__sockjs__/n=" + ROBUST + b"/0/a/xhr", b"r:" + ROBUST),
    (b"/__sockjs__/o=" + ROBUST + b"/999/zz/websocket", b"r:" + ROBUST),
    # Plain SockJS (Shiny Server before robust ids, the contract's example).
    (b"/app/__sockjs__/861/lqtq3eb5/websocket", b"s:861/lqtq3eb5"),
    (b"/app/__sockjs__/861/lqtq3eb5/xhr_streaming", b"s:861/lqtq3eb5"),
    (b"/app/__sockjs__/861/lqtq3eb5/xhr_send", b"s:861/lqtq3eb5"),
    (b"/app/__sockjs__/861/lqtq3eb5/jsonp", b"s:861/lqtq3eb5"),
    # No session: the page, static files, SockJS's info, iframe and raw
    # websocket endpoints, an unknown transport, ids with dots.
    (b"/app/", None),
    (b"/app/shared/shiny.min.js", None),
    (b"/app/__sockjs__/info", None),
    (b"/app/__sockjs__/iframe.html", None),
    (b"/app/__sockjs__/iframe-a1b2c3.html", None),
    (b"/app/__sockjs__/websocket", None),
    (b"/app/__sockjs__/861/lqtq3eb5/nonsense", None),
    (b"/app/__sockjs__/861/lq.tq/xhr", None),
    (b"/app/__sockjs__//lqtq3eb5/xhr", None),
    (b"/app/__sockjs__/861/lqtq3eb5/xhr/more", None),
    (b"/app/sockjs/861/lqtq3eb5/xhr", None),
]


class SockJSKeyTests(SynchronousTestCase):
    """
    L{sockjsKey} on the URLs clients really send.
    """

    def test_table(self):
        """
        Each path of the table has its session key.
        """
        for path, expected in SOCKJS_PATHS:
            self.assertEqual(sockjsKey(path), expected, path)

    def test_oneSessionOneKey(self):
        """
        Every transport of a SockJS session has the session's key.
        """
        keys = {
            sockjsKey(b"/a/__sockjs__/n=" + ROBUST + b"/1/s/" + transport)
            for transport in SOCKJS_TRANSPORTS
        }
        self.assertEqual(keys, {b"r:" + ROBUST})
        keys = {sockjsKey(b"/a/__sockjs__/1/s/" + transport) for transport in SOCKJS_TRANSPORTS}
        self.assertEqual(keys, {b"s:1/s"})

    def test_keysDoNotCollide(self):
        """
        A worker, a robust id and a SockJS pair with the same text have
        different keys.
        """
        keys = {
            sockjsKey(b"/__sockjs__/w=ab/1/s/xhr"),
            sockjsKey(b"/__sockjs__/n=ab/1/s/xhr"),
            sockjsKey(b"/__sockjs__/1/ab/xhr"),
        }
        self.assertEqual(len(keys), 3)


class SelectionRequestTests(SynchronousTestCase):
    """
    The request view and what it reads.
    """

    def test_fromTwistedHeaders(self):
        """
        Headers come as Twisted gives them, (name, values); names are
        lower-cased and repeated values kept in order.
        """
        view = selectionRequest(
            "192.0.2.7",
            [(b"X-User", [b"alice", b"bob"]), (b"Host", [b"example.com"])],
            b"/app/",
            (b"/app/", b"app"),
        )
        self.assertEqual(
            view,
            SelectionRequest(
                "192.0.2.7",
                ((b"x-user", b"alice"), (b"x-user", b"bob"), (b"host", b"example.com")),
                b"/app/",
                (b"/app/", b"app"),
                (),
            ),
        )
        self.assertEqual(view.header(b"x-user"), b"alice")
        self.assertIsNone(view.header(b"x-other"))

    def test_cookiesFromHeaders(self):
        """
        Without cookies given, those of the C{Cookie} headers are read.
        """
        view = selectionRequest(
            "::1", [(b"Cookie", [b"a=1; proxyws_member=m-1", b"b = 2"])], b"/"
        )
        self.assertEqual(view.cookie(b"proxyws_member"), b"m-1")
        self.assertEqual(view.cookie(b"b"), b"2")
        self.assertIsNone(view.cookie(b"c"))

    def test_cookiesGiven(self):
        """
        Cookies may be given as a mapping (Twisted's C{received_cookies}) or
        as pairs.
        """
        for cookies in [{b"sid": b"x"}, [(b"sid", b"x")]]:
            view = selectionRequest("::1", [(b"Cookie", [b"sid=y"])], b"/", cookies=cookies)
            self.assertEqual(view.cookie(b"sid"), b"x")

    def test_parseCookies(self):
        """
        C{name=value} pairs, spaces stripped; a pair without C{=} is left
        out.
        """
        self.assertEqual(
            parseCookies([b"a=1;b=2; c", b" d = x=y "]),
            ((b"a", b"1"), (b"b", b"2"), (b"d", b"x=y")),
        )


class RequestKeyTests(SynchronousTestCase):
    """
    What the C{hash} policy hashes.
    """

    def test_sources(self):
        """
        Each source reads its value; a missing or empty one is L{None}.
        """
        view = selectionRequest(
            "10.0.0.9",
            [(b"X-User", [b"alice"]), (b"Cookie", [b"sid=s1; empty="])],
            b"/u/alice",
            (b"/u/alice", b"alice", None),
        )
        cases = [
            (HashKey(), b"10.0.0.9"),
            (HashKey("header", b"x-user"), b"alice"),
            (HashKey("header", b"x-none"), None),
            (HashKey("cookie", b"sid"), b"s1"),
            (HashKey("cookie", b"empty"), None),
            (HashKey("match", 0), b"/u/alice"),
            (HashKey("match", 1), b"alice"),
            (HashKey("match", 2), None),
            (HashKey("match", 5), None),
        ]
        for hashKey, expected in cases:
            self.assertEqual(requestKey(hashKey, view), expected, hashKey)


class CookieTests(SynchronousTestCase):
    """
    The affinity cookie.
    """

    def test_setCookie(self):
        """
        The default cookie is a session cookie for the whole site, not
        readable by scripts; every attribute is written when set.
        """
        self.assertEqual(
            setCookieValue(CookieSettings(), "m-1"),
            b"proxyws_member=m-1; Path=/; HttpOnly; SameSite=Lax",
        )
        cookie = CookieSettings(
            name="SRV", path="/app", domain="example.com", secure=True,
            httpOnly=False, sameSite="None", maxAge=3600,
        )
        self.assertEqual(
            setCookieValue(cookie, "a"),
            b"SRV=a; Path=/app; Domain=example.com; Max-Age=3600; Secure; SameSite=None",
        )

    def test_strip(self):
        """
        The member never sees the affinity cookie; the others stay, and a
        header left empty is dropped.
        """
        cases = [
            (b"a=1; SRV=m-1; b=2", b"a=1; b=2"),
            (b"SRV=m-1", None),
            (b"SRV=m-1;", None),
            (b"a=1", b"a=1"),
            (b"SRVX=1; a=SRV", b"SRVX=1; a=SRV"),
        ]
        for value, expected in cases:
            self.assertEqual(stripCookie(value, b"SRV"), expected, value)
