"""
Tests for L{proxyws.routing}: path normalization, host and prefix rules,
first-match routing and the inference of reverse mappings, as tables.
"""

import re

from twisted.trial.unittest import SynchronousTestCase

from proxyws.config import parseConfig
from proxyws.errors import BadRequest
from proxyws.routing import (
    ROUTE_CACHE_ENTRIES, ROUTE_CACHE_TARGET, Router, compileTemplate, expandTemplate, hostMatches, hostOfHeader,
    normalizePath, prefixMatches, reverseMapping, splitTarget, withQuery)

LISTEN = '[[listen]]\naddress = "127.0.0.1"\nport = 8080\n'


def routerFor(*routes):
    """
    A L{Router} over routes written as TOML.

    @param routes: each the body of one C{[[route]]} table.
    @return: a L{Router}.
    """
    text = LISTEN + "".join("\n[[route]]\n" + body + "\n" for body in routes)
    return Router(parseConfig(text).routes)


class NormalizePathTests(SynchronousTestCase):
    """
    L{normalizePath} decodes unreserved characters and removes dot segments.
    """

    def test_normalizePath(self):
        """
        Each path normalizes to the expected path.
        """
        cases = [
            (b"/", b"/"),
            (b"/app/x", b"/app/x"),
            (b"/a//b", b"/a//b"),
            (b"/a/./b", b"/a/b"),
            (b"/a/b/../c", b"/a/c"),
            (b"/a/b/..", b"/a/"),
            (b"/a/b/../", b"/a/"),
            (b"/a/.", b"/a/"),
            (b"/.", b"/"),
            (b"/..", b"/"),
            (b"/../../x", b"/x"),
            (b"/app/../secret", b"/secret"),
            (b"/app/%2e%2e/secret", b"/secret"),
            (b"/app/%2E%2E/secret", b"/secret"),
            (b"/app/.%2e/secret", b"/secret"),
            (b"/a/%2E/b", b"/a/b"),
            (b"/a/%2E", b"/a/"),
            (b"/a/..b/c", b"/a/..b/c"),
            (b"/a/b.c", b"/a/b.c"),
            (b"/a%2Fb", b"/a%2Fb"),
            (b"/a%2fb", b"/a%2Fb"),
            (b"/a%2f..%2fb", b"/a%2F..%2Fb"),
            (b"/app/..%2Fsecret", b"/app/..%2Fsecret"),
            (b"/%7euser", b"/~user"),
            (b"/%7Euser", b"/~user"),
            (b"/%41%62%2d%5f", b"/Ab-_"),
            (b"/a%20b", b"/a%20b"),
            (b"/a%c3%a9", b"/a%C3%A9"),
            (b"/a%3fb", b"/a%3Fb"),
        ]
        for path, expected in cases:
            self.assertEqual(normalizePath(path), expected, path)

    def test_badPercentEncoding(self):
        """
        A C{%} not followed by two hex digits is a bad request.
        """
        for path in [b"/%zz", b"/a%", b"/a%2", b"/%g0", b"/a%%20", b"/%2"]:
            error = self.assertRaises(BadRequest, normalizePath, path)
            self.assertEqual(error.status, 400, path)

    def test_notAbsolute(self):
        """
        A path that does not start with a slash is a bad request.
        """
        for path in [b"", b"app", b"*", b"http://x/"]:
            self.assertRaises(BadRequest, normalizePath, path)


class SplitAndQueryTests(SynchronousTestCase):
    """
    L{splitTarget} and L{withQuery} keep the query as the client sent it.
    """

    def test_splitTarget(self):
        """
        The path and the query are split at the first C{?}; an empty query
        is not the same as no query.
        """
        cases = [
            (b"/a", (b"/a", None)),
            (b"/a?", (b"/a", b"")),
            (b"/a?x=1", (b"/a", b"x=1")),
            (b"/a?x=1?y", (b"/a", b"x=1?y")),
        ]
        for target, expected in cases:
            self.assertEqual(splitTarget(target), expected, target)

    def test_withQuery(self):
        """
        The query is appended after C{?}, or after C{&} when the backend
        target has a query of its own.
        """
        cases = [
            (b"/b", None, b"/b"),
            (b"/b", b"", b"/b?"),
            (b"/b", b"x=1", b"/b?x=1"),
            (b"/b?k=v", None, b"/b?k=v"),
            (b"/b?k=v", b"", b"/b?k=v"),
            (b"/b?k=v", b"x=1", b"/b?k=v&x=1"),
        ]
        for target, query, expected in cases:
            self.assertEqual(
                withQuery(target, query), expected, (target, query))


class HostTests(SynchronousTestCase):
    """
    L{hostOfHeader} and L{hostMatches}.
    """

    def test_hostOfHeader(self):
        """
        The host is lower-cased and its port dropped; IPv6 keeps brackets.
        """
        cases = [
            (None, b""),
            (b"", b""),
            (b"Example.COM", b"example.com"),
            (b"example.com:8080", b"example.com"),
            (b" example.com ", b"example.com"),
            (b"[::1]:8080", b"[::1]"),
            (b"[::1]", b"[::1]"),
            (b"[FE80::1]:80", b"[fe80::1]"),
            (b"127.0.0.1:80", b"127.0.0.1"),
        ]
        for header, expected in cases:
            self.assertEqual(hostOfHeader(header), expected, header)

    def test_hostMatches(self):
        """
        Names match exactly (after L{hostOfHeader}), wildcards match one or
        more labels, and no patterns match every host.
        """
        cases = [
            ((), b"anything", True),
            ((), b"", True),
            ((b"example.com",), b"example.com", True),
            ((b"example.com",), b"www.example.com", False),
            ((b"example.com",), b"", False),
            ((b"*.example.com",), b"a.example.com", True),
            ((b"*.example.com",), b"a.b.example.com", True),
            ((b"*.example.com",), b"example.com", False),
            ((b"*.example.com",), b".example.com", False),
            ((b"*.example.com",), b"badexample.com", False),
            ((b"*.example.com",), b"example.com.evil", False),
            ((b"a.test", b"b.test"), b"b.test", True),
            ((b"a.test", b"b.test"), b"c.test", False),
            ((b"[::1]",), b"[::1]", True),
        ]
        for patterns, host, expected in cases:
            self.assertEqual(
                hostMatches(patterns, host), expected, (patterns, host))

    def test_hostMatchesHeader(self):
        """
        Together, host matching ignores case and port.
        """
        cases = [
            (b"Shiny.Example.COM:8443", (b"shiny.example.com",), True),
            (b"A.Example.com:80", (b"*.example.com",), True),
            (b"[::1]:8080", (b"[::1]",), True),
            (b"[::2]:8080", (b"[::1]",), False),
        ]
        for header, patterns, expected in cases:
            self.assertEqual(
                hostMatches(patterns, hostOfHeader(header)), expected, header)


class PrefixMatchesTests(SynchronousTestCase):
    """
    L{prefixMatches} follows Apache's ProxyPass rule.
    """

    def test_prefixMatches(self):
        """
        A prefix with a trailing slash covers what starts with it; one
        without covers itself and the paths below it.
        """
        cases = [
            (b"/app", b"/app", True),
            (b"/app", b"/app/", True),
            (b"/app", b"/app/x", True),
            (b"/app", b"/apple", False),
            (b"/app", b"/ap", False),
            (b"/app", b"/", False),
            (b"/app/", b"/app/x", True),
            (b"/app/", b"/app/", True),
            (b"/app/", b"/app", False),
            (b"/app/", b"/apple/", False),
            (b"/", b"/", True),
            (b"/", b"/anything/at/all", True),
            (b"/a/b", b"/a/b/c", True),
            (b"/a/b", b"/a/bc", False),
        ]
        for prefix, path, expected in cases:
            self.assertEqual(
                prefixMatches(prefix, path), expected, (prefix, path))


class TemplateTests(SynchronousTestCase):
    """
    L{compileTemplate} and L{expandTemplate} fill C{$N} with groups.
    """

    def test_compileTemplate(self):
        """
        A template splits into literal pieces and group numbers.
        """
        cases = [
            (b"/", (b"/",)),
            (b"/$1", (b"/", 1)),
            (b"$1", (1,)),
            (b"/a/$1/b?x=$2", (b"/a/", 1, b"/b?x=", 2)),
            (b"/$1$2", (b"/", 1, 2)),
            (b"/$0", (b"/", 0)),
        ]
        for template, expected in cases:
            self.assertEqual(compileTemplate(template), expected, template)

    def test_expandNonParticipatingGroup(self):
        """
        A group that did not take part in the match expands to nothing.
        """
        match = re.compile(rb"^/(a)?(b)").search(b"/b")
        self.assertEqual(
            expandTemplate(compileTemplate(b"/x$1/$2"), match), b"/x/b")


class RouterTests(SynchronousTestCase):
    """
    L{Router} tries the routes in order; the first that matches wins.
    """

    def assertRoutes(self, router, cases):
        """
        Each C{(host, target, index, backendTarget)} case routes as given;
        an index of L{None} means no route matches.
        """
        for host, target, index, backend in cases:
            found = router.route(host, target)
            if index is None:
                self.assertIsNone(found, (host, target))
                continue
            self.assertIsNotNone(found, (host, target))
            self.assertEqual(
                (found.route.index, found.target), (index, backend),
                (host, target))

    def test_contractExamples(self):
        """
        The routes of the contract's example route as it describes.
        """
        router = routerFor(
            'path = "/app/"\nbackend = "http://127.0.0.1:3838/"',
            "match = '^/(.*/__sockjs__/[0-9]+/.*)'\n"
            'backend = "ws://127.0.0.1:3838/$1"',
            'host = "shiny.example.com"\npath = "/"\n'
            'backend = "https://10.0.0.5:8443/"',
        )
        self.assertRoutes(router, [
            (b"x", b"/app/", 0, b"/"),
            (b"x", b"/app/foo?x=1", 0, b"/foo?x=1"),
            (b"x", b"/app/__sockjs__/1/abc/websocket", 0,
             b"/__sockjs__/1/abc/websocket"),
            (b"x", b"/shiny/__sockjs__/12/abc/websocket", 1,
             b"/shiny/__sockjs__/12/abc/websocket"),
            (b"x", b"/shiny/__sockjs__/12/abc/xhr?t=1", 1,
             b"/shiny/__sockjs__/12/abc/xhr?t=1"),
            (b"x", b"/shiny/__sockjs__/x/abc", None, None),
            (b"shiny.example.com", b"/other?q", 2, b"/other?q"),
            (b"Shiny.Example.com:443", b"/", 2, b"/"),
            (b"other.example.com", b"/other", None, None),
            (None, b"/other", None, None),
            (b"x", b"/app", None, None),
        ])

    def test_prefixToBackendPath(self):
        """
        The part after the prefix follows the backend path; the query is
        passed on.
        """
        router = routerFor('path = "/app/"\nbackend = "http://b/base/"')
        self.assertRoutes(router, [
            (None, b"/app/foo?x=1", 0, b"/base/foo?x=1"),
            (None, b"/app/", 0, b"/base/"),
            (None, b"/app/?", 0, b"/base/?"),
            (None, b"/app/a/b/c", 0, b"/base/a/b/c"),
            (None, b"/app/a%2Fb", 0, b"/base/a%2Fb"),
            (None, b"/app", None, None),
        ])

    def test_prefixWithoutSlash(self):
        """
        A path without a trailing slash covers itself and below, not a
        longer name.
        """
        router = routerFor('path = "/app"\nbackend = "http://b/base"')
        self.assertRoutes(router, [
            (None, b"/app", 0, b"/base"),
            (None, b"/app/x?y", 0, b"/base/x?y"),
            (None, b"/apple", None, None),
        ])

    def test_backendWithoutPath(self):
        """
        A backend with no path takes what follows the prefix, always as an
        absolute path.
        """
        cases = [
            ('path = "/app"\nbackend = "http://b"', [
                (None, b"/app", 0, b"/"),
                (None, b"/app?q", 0, b"/?q"),
                (None, b"/app/x", 0, b"/x"),
                (None, b"/apple", None, None),
            ]),
            ('path = "/app/"\nbackend = "http://b"', [
                (None, b"/app/", 0, b"/"),
                (None, b"/app/x", 0, b"/x"),
            ]),
            ('path = "/"\nbackend = "http://b"', [
                (None, b"/", 0, b"/"),
                (None, b"/x/y", 0, b"/x/y"),
            ]),
        ]
        for table, routed in cases:
            self.assertRoutes(routerFor(table), routed)

    def test_firstMatchWins(self):
        """
        An earlier route wins over a later, even a longer, one.
        """
        router = routerFor(
            'path = "/a/"\nbackend = "http://one/"',
            'path = "/a/b/"\nbackend = "http://two/"',
            'path = "/"\nbackend = "http://three/"',
        )
        self.assertRoutes(router, [
            (None, b"/a/b/c", 0, b"/b/c"),
            (None, b"/a/", 0, b"/"),
            (None, b"/b/", 2, b"/b/"),
            (None, b"/", 2, b"/"),
        ])
        self.assertEqual(
            router.route(None, b"/a/b/c").route.backend.host, "one")

    def test_hostRouteSkipped(self):
        """
        A route for another host is skipped; the next route can match.
        """
        router = routerFor(
            'host = "*.example.com"\npath = "/"\nbackend = "http://wild/"',
            'path = "/"\nbackend = "http://any/"',
        )
        self.assertRoutes(router, [
            (b"a.example.com", b"/x", 0, b"/x"),
            (b"A.B.EXAMPLE.COM:8080", b"/x", 0, b"/x"),
            (b"example.com", b"/x", 1, b"/x"),
            (None, b"/x", 1, b"/x"),
        ])

    def test_ipv6HostRoute(self):
        """
        An IPv6 host route matches the bracketed literal with any port.
        """
        router = routerFor('host = "[::1]"\npath = "/"\nbackend = "http://b/"')
        self.assertRoutes(router, [
            (b"[::1]:8080", b"/x", 0, b"/x"),
            (b"[::1]", b"/x", 0, b"/x"),
            (b"127.0.0.1:8080", b"/x", None, None),
        ])

    def test_regexQueryPassedOn(self):
        """
        A regex route matches the path without the query, and passes the
        query on, after the backend's own query if it has one.
        """
        router = routerFor(
            "match = '^/a/([^/]*)$'\nbackend = \"http://b/x/$1\"",
            "match = '^/q/(.*)$'\nbackend = \"http://b/y?k=$1\"",
        )
        self.assertRoutes(router, [
            (None, b"/a/foo?bar=1", 0, b"/x/foo?bar=1"),
            (None, b"/a/foo?", 0, b"/x/foo?"),
            (None, b"/a/foo", 0, b"/x/foo"),
            (None, b"/q/v?z=2", 1, b"/y?k=v&z=2"),
            (None, b"/q/v", 1, b"/y?k=v"),
        ])

    def test_regexSearches(self):
        """
        An expression without C{^} may match anywhere in the path.
        """
        router = routerFor("match = 'ws/(\\d+)'\nbackend = \"http://b/n/$1\"")
        self.assertRoutes(router, [
            (None, b"/deep/ws/42/x", 0, b"/n/42"),
            (None, b"/deep/ws/x", None, None),
        ])

    def test_regexNonParticipatingGroup(self):
        """
        $N of a group that did not take part in the match is empty.
        """
        router = routerFor(
            "match = '^/(a/)?(.*)$'\nbackend = \"http://b/x/$1$2\"")
        self.assertRoutes(router, [
            (None, b"/a/b", 0, b"/x/a/b"),
            (None, b"/c", 0, b"/x/c"),
        ])

    def test_regexSeesNormalizedPath(self):
        """
        A regex route is tested against the normalized path.
        """
        router = routerFor("match = '^/~(.*)$'\nbackend = \"http://b/u/$1\"")
        self.assertRoutes(router, [
            (None, b"/%7Ealice/x", 0, b"/u/alice/x"),
            (None, b"/x/../~bob", 0, b"/u/bob"),
        ])

    def test_noEscapeFromPrefix(self):
        """
        A request that climbs out of a prefix never matches it; a C{/} route
        gets the normalized path.
        """
        router = routerFor(
            'path = "/app/"\nbackend = "http://app/"',
            'path = "/"\nbackend = "http://root/"',
        )
        self.assertRoutes(router, [
            (None, b"/app/../secret", 1, b"/secret"),
            (None, b"/app/%2e%2e/secret", 1, b"/secret"),
            (None, b"/app/%2E%2E/secret?x", 1, b"/secret?x"),
            (None, b"/app/./../secret", 1, b"/secret"),
            (None, b"/app/x/../../secret", 1, b"/secret"),
            (None, b"/app/x/../y", 0, b"/y"),
            (None, b"/app/..%2Fsecret", 0, b"/..%2Fsecret"),
            (None, b"/app/.", 0, b"/"),
        ])

    def test_noEscapeWithoutFallback(self):
        """
        Without a C{/} route, a request escaping the prefix matches nothing.
        """
        router = routerFor('path = "/app/"\nbackend = "http://app/base/"')
        self.assertRoutes(router, [
            (None, b"/app/../secret", None, None),
            (None, b"/app/%2e%2e/secret", None, None),
            (None, b"/app/%2e%2e", None, None),
        ])

    def test_badRequestTarget(self):
        """
        A target that cannot be normalized raises L{BadRequest}.
        """
        router = routerFor('path = "/"\nbackend = "http://b/"')
        self.assertRaises(BadRequest, router.route, None, b"/a%zz")
        self.assertRaises(BadRequest, router.route, None, b"a")

    def test_noRoutes(self):
        """
        An empty table matches nothing.
        """
        self.assertIsNone(Router([]).route(b"x", b"/"))


class RouteCacheTests(SynchronousTestCase):
    """
    L{Router.route} keeps its outcomes: asked again, it answers the same,
    and what it keeps is bounded.
    """

    ROUTES = (
        'path = "/app/"\nbackend = "http://127.0.0.1:3838/base/"',
        "match = '^/(.*/__sockjs__/[0-9]+/.*)'\nbackend = \"ws://127.0.0.1:3838/$1\"",
        'host = "shiny.example.com"\npath = "/"\nbackend = "https://10.0.0.5:8443/"',
    )

    # (host, target) pairs, each routed (or not) as a new router would.
    CASES = [
        (b"x", b"/app/foo?x=1"),
        (b"x", b"/app/./a/../b%7e"),
        (b"x", b"/shiny/__sockjs__/12/abc/xhr?t=1"),
        (b"shiny.example.com", b"/other?q"),
        (b"other.example.com", b"/other"),
        (None, b"/app/"),
        (b"x", b"/app"),
    ]

    def test_sameOutcomeAgain(self):
        """
        A pair routed again gets the outcome it got the first time, the
        same a new router gives.
        """
        router = routerFor(*self.ROUTES)
        first = [router.route(host, target) for host, target in self.CASES]
        again = [router.route(host, target) for host, target in self.CASES]
        fresh = [routerFor(*self.ROUTES).route(host, target) for host, target in self.CASES]
        for host, target, a, b, c in zip(*zip(*self.CASES), first, again, fresh):
            self.assertIs(a, b, (host, target))
            if c is None:
                self.assertIsNone(a, (host, target))
            else:
                self.assertEqual(
                    (a.route.index, a.target, a.path), (c.route.index, c.target, c.path),
                    (host, target))

    def test_refusalsNotKept(self):
        """
        A target that cannot be normalized is refused every time.
        """
        router = routerFor(*self.ROUTES)
        for _ in range(2):
            self.assertRaises(BadRequest, router.route, b"x", b"/a%zz")

    def test_bounded(self):
        """
        At most L{ROUTE_CACHE_ENTRIES} outcomes are kept, and none for a
        target or host longer than L{ROUTE_CACHE_TARGET}; routing goes on
        right past the bound.
        """
        router = routerFor(*self.ROUTES)
        for n in range(ROUTE_CACHE_ENTRIES * 2 + 10):
            found = router.route(b"x", b"/app/%d" % n)
            self.assertEqual(found.target, b"/base/%d" % n)
            self.assertLessEqual(len(router._outcomes), ROUTE_CACHE_ENTRIES)
        router._outcomes.clear()
        long = b"/app/" + b"a" * ROUTE_CACHE_TARGET
        self.assertEqual(router.route(b"x", long).target, b"/base/" + b"a" * ROUTE_CACHE_TARGET)
        self.assertEqual(router.route(b"x" * (ROUTE_CACHE_TARGET + 1), b"/app/").target, b"/base/")
        self.assertEqual(router._outcomes, {})


class ReverseMappingTests(SynchronousTestCase):
    """
    L{reverseMapping} infers how to map backend paths back to front paths.
    """

    def test_prefixRoutes(self):
        """
        A prefix route maps its backend path back to its path.
        """
        cases = [
            (b"/app/", b"/base/", (b"/base/", b"/app/")),
            (b"/app", b"/base", (b"/base", b"/app")),
            (b"/", b"/", (b"/", b"/")),
            (b"/app", b"", (b"", b"/app")),
            (b"/app/", b"", (b"/", b"/app/")),
            (b"/", b"", (b"/", b"/")),
        ]
        for prefix, backendPath, expected in cases:
            self.assertEqual(
                reverseMapping(prefix, None, backendPath), expected,
                (prefix, backendPath))

    def test_inferred(self):
        """
        A regex of a literal path then one group to the end, with a backend
        path ending in that group, is mapped back.
        """
        cases = [
            (rb"^/app/(.*)", b"/base/$1", (b"/base/", b"/app/")),
            (rb"^/app/(.*)$", b"/base/$1", (b"/base/", b"/app/")),
            (rb"^/app/(.+)", b"/$1", (b"/", b"/app/")),
            (rb"^/(.*)", b"/x/$1", (b"/x/", b"/")),
            (rb"^/a\.b/(.*)", b"/c/$1", (b"/c/", b"/a.b/")),
            (rb"^/a\-b_c~d/(.*)", b"/$1", (b"/", b"/a-b_c~d/")),
            (rb"^/app/(.*)", b"/base$1", (b"/base", b"/app/")),
        ]
        for match, backendPath, expected in cases:
            self.assertEqual(
                reverseMapping(None, match, backendPath), expected,
                (match, backendPath))

    def test_notInferred(self):
        """
        Anything else cannot be mapped back, and gives L{None}.
        """
        cases = [
            (rb"^/(.*/__sockjs__/[0-9]+/.*)", b"/$1"),
            (rb"/app/(.*)", b"/base/$1"),
            (rb"^/app/(.*)/x", b"/base/$1"),
            (rb"^/a.b/(.*)", b"/c/$1"),
            (rb"^/app/([a-z]*)", b"/base/$1"),
            (rb"^/(a)/(.*)", b"/base/$2"),
            (rb"^/app/(.*)", b"/base/$1/x"),
            (rb"^/app/(.*)", b"/base/$1?x=1"),
            (rb"^/app/(.*)", b"/base/"),
            (rb"^/app/(.*)", b"/$1/$1"),
            (rb"^/app/(.*)", b"/$0"),
            (rb"^/app/(?:.*)", b"/$1"),
        ]
        for match, backendPath in cases:
            self.assertIsNone(
                reverseMapping(None, match, backendPath),
                (match, backendPath))

    def test_fromConfig(self):
        """
        A parsed route carries its inferred mapping.
        """
        router = routerFor(
            "match = '^/app/(.*)'\nbackend = \"http://b/base/$1\"",
            "match = '^/x/(.*)/y'\nbackend = \"http://b/$1\"",
        )
        self.assertEqual(
            [r.reverse for r in router.routes], [(b"/base/", b"/app/"), None])
