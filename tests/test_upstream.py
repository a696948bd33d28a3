"""
Tests for upstreams: the C{[[upstream]]} tables and upstream routes of the
config (every error text), and L{proxyws.upstream}: member choice with
affinity, draining, health, the registry and its reloads.
"""

import json
import os
import subprocess
import sys
import tempfile
from collections import Counter

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest
from zope.interface.verify import verifyObject

from proxyws.affinity import NOCACHE, selectionRequest, sockjsKey
from proxyws.balancing import hash64, rendezvous
from proxyws.config import parseConfig
from proxyws.errors import ConfigError, ServiceUnavailable
from proxyws.interfaces import IUpstreamMember
from proxyws.routing import Router
from proxyws.upstream import (
    Choice,
    Upstreams,
    UpstreamUnavailable,
    memberBackends,
)
from proxyws.values import (
    BackendTLS,
    CheckSettings,
    CookieSettings,
    HashKey,
    derivedName,
)

from .helpers import ROOT, rawRequest, startBackend, startProxy, subprocessEnvironment
from .test_health import FakeProbe, captureLog

LISTEN = '[[listen]]\naddress = "127.0.0.1"\nport = 8080\n'

# The example of the outside contract's "Upstreams" section, word for word.
CONTRACT = LISTEN + """
[[upstream]]
name = "shiny"
members = [{ url = "http://127.0.0.1:3838/", weight = 2 }, "http://127.0.0.1:3839/"]
policy = "round_robin"      # or "least_conn", "random_two", "hash"
affinity = "sockjs"         # or "cookie", "none" (default)

[[route]]
path = "/"
upstream = "shiny"          # instead of backend
"""

MEMBERS = 'members = ["http://a:1/", "http://b:2/"]'


def upstream(*lines, routes=()):
    """
    A config with one C{[[upstream]]} of C{lines} and C{routes}.

    @param routes: each route a list of lines.
    """
    text = LISTEN + "\n[[upstream]]\n" + "\n".join(lines) + "\n"
    for route in routes:
        text += "\n[[route]]\n" + "\n".join(route) + "\n"
    return text


def named(*lines, routes=()):
    """
    L{upstream} with C{name = "u"} and two members before C{lines}.
    """
    return upstream('name = "u"', MEMBERS, *lines, routes=routes)


class ConfigTests(SynchronousTestCase):
    """
    The values C{[[upstream]]} tables and upstream routes produce.
    """

    def test_contractExample(self):
        """
        The contract's example: two members (the first of weight 2), round
        robin, SockJS affinity; the route's backend is the first member.
        """
        config = parseConfig(CONTRACT)
        (shiny,) = config.upstreams
        self.assertEqual(shiny.name, "shiny")
        self.assertEqual([m.url for m in shiny.members], ["http://127.0.0.1:3838/", "http://127.0.0.1:3839/"])
        self.assertEqual([m.weight for m in shiny.members], [2, 1])
        self.assertEqual((shiny.policy, shiny.affinity), ("round_robin", "sockjs"))
        (route,) = config.routes
        self.assertEqual(route.upstream, "shiny")
        self.assertEqual(route.backend, shiny.members[0].backend)
        self.assertEqual(shiny.members[1].backend.port, 3839)

    def test_exampleConfig(self):
        """
        C{conf/shiny-upstreams.toml} loads, as the README says.
        """
        with open(os.path.join(ROOT, "conf", "shiny-upstreams.toml")) as f:
            (shiny,) = parseConfig(f.read()).upstreams
        self.assertEqual([m.name for m in shiny.members], ["shiny-1", "shiny-2", "shiny-3"])
        self.assertEqual(
            (shiny.policy, shiny.affinity, shiny.cookie.name, shiny.check.interval),
            ("least_conn", "sockjs", "shiny_member", 5.0),
        )

    def test_defaults(self):
        """
        Every key but the name and members has a default: round robin,
        the client address for hashing, no affinity, members - 1 retries,
        nginx's max_fails 1 and fail_timeout 10, no active check.
        """
        (u,) = parseConfig(named()).upstreams
        self.assertEqual(
            (u.policy, u.hashKey, u.affinity, u.cookie, u.retries, u.maxFails, u.failTimeout, u.check),
            ("round_robin", HashKey(), "none", None, 1, 1, 10.0, None),
        )
        self.assertEqual([m.name for m in u.members], [derivedName("http://a:1/"), derivedName("http://b:2/")])
        self.assertEqual([(m.weight, m.drain) for m in u.members], [(1, False), (1, False)])

    def test_everyKey(self):
        """
        Every key of an upstream, a member, the cookie and the check.
        """
        (u,) = parseConfig(upstream(
            'name = "app-1"',
            'members = [{ url = "http://a:1/", name = "one", weight = 3, drain = true }, "http://b:2/"]',
            'policy = "hash"', 'hash = "header:X-User"', 'affinity = "cookie"',
            'cookie = { name = "SRV", path = "/app", domain = "example.com", secure = true, '
            'http_only = false, same_site = "None", max_age = 3600 }',
            "retries = 0", "max_fails = 3", "fail_timeout = 30",
            'check = { type = "http", path = "/health", status = [200, 204], interval = 2, '
            "timeout = 1, rise = 1, fall = 2 }",
        )).upstreams
        self.assertEqual((u.name, u.policy, u.hashKey), ("app-1", "hash", HashKey("header", b"x-user")))
        self.assertEqual((u.members[0].name, u.members[0].weight, u.members[0].drain), ("one", 3, True))
        self.assertEqual(u.cookie, CookieSettings("SRV", "/app", "example.com", True, False, "None", 3600))
        self.assertEqual((u.retries, u.maxFails, u.failTimeout), (0, 3, 30.0))
        self.assertEqual(u.check, CheckSettings("http", b"/health", frozenset([200, 204]), 2.0, 1.0, 1, 2))

    def test_hashKeys(self):
        """
        The four forms of C{hash}.
        """
        cases = [
            ('"client"', HashKey()),
            ('"header:X-Real-User"', HashKey("header", b"x-real-user")),
            ('"cookie:JSESSIONID"', HashKey("cookie", b"JSESSIONID")),
            ('"match:1"', HashKey("match", 1)),
        ]
        for text, expected in cases:
            config = named('policy = "hash"', "hash = " + text, routes=[["match = '^/(.*)'", 'upstream = "u"']])
            self.assertEqual(parseConfig(config).upstreams[0].hashKey, expected)

    def test_cookieDefaults(self):
        """
        Cookie affinity without a C{cookie} table inserts the default cookie;
        SockJS affinity has none unless given one.
        """
        (u,) = parseConfig(named('affinity = "cookie"')).upstreams
        self.assertEqual(u.cookie, CookieSettings())
        (u,) = parseConfig(named('affinity = "sockjs"')).upstreams
        self.assertIsNone(u.cookie)
        (u,) = parseConfig(named('affinity = "sockjs"', "cookie = {}")).upstreams
        self.assertEqual(u.cookie, CookieSettings())

    def test_checkDefaults(self):
        """
        An empty check table is an HTTP GET of / every 5 s with a 2 s
        timeout, passing on 200 to 399, rise 2, fall 3; a TCP check needs no
        path.
        """
        (u,) = parseConfig(named("check = {}")).upstreams
        self.assertEqual(u.check, CheckSettings())
        self.assertEqual([u.check.passes(s) for s in (199, 200, 302, 399, 400, 503)],
                         [False, True, True, True, False, False])
        (u,) = parseConfig(named('check = { type = "tcp" }')).upstreams
        self.assertEqual(u.check, CheckSettings(type="tcp"))

    def test_matchRoute(self):
        """
        On a C{match} route, C{$N} in the members' path take the groups;
        each member carries the compiled template, and the route's target
        is right for every member.
        """
        config = parseConfig(upstream(
            'name = "u"', 'members = ["http://a:1/app/$1", "http://b:2/app/$1"]',
            routes=[["match = '^/s/(.*)'", 'upstream = "u"']],
        ))
        (u,), (route,) = config.upstreams, config.routes
        self.assertEqual([m.template for m in u.members], [(b"/app/", 1)] * 2)
        self.assertEqual(route.template, (b"/app/", 1))
        self.assertEqual(Router(config.routes).route(None, b"/s/x?y=1").target, b"/app/x?y=1")

    def test_pathlessMembers(self):
        """
        Members without a path go with any prefix, as a backend without one
        does: the request path passes unchanged.
        """
        config = parseConfig(upstream(
            'name = "u"', 'members = ["http://a:1", "http://b:2"]',
            routes=[['path = "/app/"', 'upstream = "u"']],
        ))
        self.assertEqual(Router(config.routes).route(None, b"/app/x").target, b"/x")

    def test_backendTLSForEveryMember(self):
        """
        The route's C{backend_tls} applies to every member; routes sharing
        the upstream may repeat the same settings.
        """
        tls = 'backend_tls = { server_name = "b.internal", verify = false }'
        config = parseConfig(upstream(
            'name = "u"', 'members = ["https://a:1/", "https://b:2/"]',
            routes=[['path = "/"', 'upstream = "u"', tls], ['path = "/x/"', 'upstream = "u"', tls]],
        ))
        expected = BackendTLS(serverName="b.internal", verify=False)
        self.assertEqual([m.backend.tls for m in config.upstreams[0].members], [expected, expected])
        self.assertEqual(config.routes[0].backend, config.upstreams[0].members[0].backend)
        self.assertEqual(
            [(path, backend.port) for path, backend in memberBackends(config)],
            [("upstream[0].members[0]", 1), ("upstream[0].members[1]", 2)],
        )

    def test_unusedUpstream(self):
        """
        An upstream no route uses is kept (its checks run; a reload may
        route to it).
        """
        self.assertEqual(len(parseConfig(named()).upstreams), 1)

    def test_hostRoute(self):
        """
        Routes of a C{[[host]]} name upstreams too.
        """
        config = parseConfig(named() + '[[host]]\nnames = ["a.example"]\n'
                             '[[host.route]]\npath = "/"\nupstream = "u"\n')
        self.assertEqual(config.routes[0].upstream, "u")


class ConfigErrorTests(SynchronousTestCase):
    """
    Every error of an upstream or an upstream route, by its exact text.
    """

    def assertErrors(self, cases):
        """
        Each config text raises a L{ConfigError} of the text given.
        """
        for text, expected in cases:
            error = self.assertRaises(ConfigError, parseConfig, text)
            self.assertEqual(str(error), "proxyws.toml: " + expected)

    def test_tables(self):
        """
        The upstream tables themselves.
        """
        member = ("a URL string or a table such as "
                  "{ url = 'http://10.0.0.1:3838/', weight = 2 }")
        self.assertErrors([
            ("upstream = 1\n" + LISTEN, "upstream: must be written as [[upstream]] tables"),
            (upstream(MEMBERS), "upstream[0].name: is required and missing"),
            (upstream('name = "u"'), "upstream[0].members: is required and missing"),
            (upstream('name = "a b"', MEMBERS),
             "upstream[0].name: 'a b' is not a name of 1 to 64 letters, digits and '_.~-'"),
            (named('polcy = "hash"'),
             "upstream[0].polcy: unknown key (did you mean 'policy'?); known keys here are "
             "affinity, check, cookie, fail_timeout, hash, max_fails, members, name, policy, retries"),
            (named() + '[[upstream]]\nname = "u"\nmembers = ["http://c:3/"]\n',
             "upstream[1].name: 'u' is already the name of upstream[0]"),
            (upstream('name = "u"', 'members = "http://a/"'),
             "upstream[0].members: 'http://a/' is not a list of members, each " + member),
            (upstream('name = "u"', "members = []"),
             "upstream[0].members: is empty: list at least one member"),
        ])

    def test_members(self):
        """
        Each member, and the members together.
        """
        member = ("a URL string or a table such as "
                  "{ url = 'http://10.0.0.1:3838/', weight = 2 }")
        url = " is not a URL with scheme http, https, ws or wss"
        cases = [
            ("[5]", "upstream[0].members[0]: 5 is not " + member),
            ('["htp://x"]', "upstream[0].members[0]: 'htp://x'" + url),
            ('["http://a/", { url = "ftp://b/" }]', "upstream[0].members[1].url: 'ftp://b/'" + url),
            ("[{ weight = 2 }]", "upstream[0].members[0].url: is required and missing"),
            ('[{ url = "http://a/", wieght = 2 }]',
             "upstream[0].members[0].wieght: unknown key (did you mean 'weight'?); known "
             "keys here are drain, name, url, weight"),
            ('[{ url = "http://a/", weight = 0 }]',
             "upstream[0].members[0].weight: 0 is not a whole number from 1 to 1000"),
            ('[{ url = "http://a/", weight = 1001 }]',
             "upstream[0].members[0].weight: 1001 is not a whole number from 1 to 1000"),
            ('[{ url = "http://a/", name = "a;b" }]',
             "upstream[0].members[0].name: 'a;b' is not a name of 1 to 64 letters, digits and '_.~-'"),
            ('[{ url = "http://a/", drain = "yes" }]',
             "upstream[0].members[0].drain: 'yes' is not true or false"),
            ('["http://a/", "http://a/"]', "upstream[0].members[1]: 'http://a/' is already members[0]"),
            ('[{ url = "http://a/", name = "x" }, { url = "http://b/", name = "x" }]',
             "upstream[0].members[1].name: 'x' is already the name of members[0]"),
            ('["http://a/", "https://b/"]',
             "upstream[0].members[1]: 'https://b/' uses https but members[0] uses http: "
             "the members of one upstream share a scheme"),
            ('["ws://a/", "http://b/"]',
             "upstream[0].members[1]: 'http://b/' uses http but members[0] uses ws: "
             "the members of one upstream share a scheme"),
            ('["http://a/app/", "http://b/other/"]',
             "upstream[0].members[1]: 'http://b/other/' has path '/other/' but members[0] has "
             "'/app/': the members of one upstream differ only in host and port"),
            ('["http://a/", "http://b"]',
             "upstream[0].members[1]: 'http://b' has path '' but members[0] has '/': "
             "the members of one upstream differ only in host and port"),
            ('["http://a/?x=1", "http://b/?x=2"]',
             "upstream[0].members[1]: 'http://b/?x=2' has path '/?x=2' but members[0] has "
             "'/?x=1': the members of one upstream differ only in host and port"),
            ('["http://a$1/"]',
             "upstream[0].members[0]: 'http://a$1/': $N may appear only in the path and query"),
        ]
        self.assertErrors([(upstream('name = "u"', "members = " + m), e) for m, e in cases])

    def test_settings(self):
        """
        Policy, hash, affinity, retries and passive health.
        """
        hashes = ("'client', 'header:NAME', 'cookie:NAME' or 'match:N' "
                  "(N a group number from 0 to 9)")
        self.assertErrors([
            (named('policy = "fastest"'),
             "upstream[0].policy: 'fastest' is not one of 'round_robin', 'least_conn', "
             "'random_two', 'hash'"),
            (named('policy = "hash"', 'hash = "ip"'), "upstream[0].hash: 'ip' is not " + hashes),
            (named('policy = "hash"', 'hash = "header:"'),
             "upstream[0].hash: 'header:' is not " + hashes),
            (named('policy = "hash"', 'hash = "header:a b"'),
             "upstream[0].hash: 'header:a b' is not " + hashes),
            (named('policy = "hash"', 'hash = "match:10"'),
             "upstream[0].hash: 'match:10' is not " + hashes),
            (named('policy = "hash"', "hash = 1"), "upstream[0].hash: 1 is not " + hashes),
            (named('hash = "client"'),
             "upstream[0].hash: is used only with policy = 'hash' (the policy is 'round_robin')"),
            (named('affinity = "ip"'),
             "upstream[0].affinity: 'ip' is not one of 'none', 'sockjs', 'cookie'"),
            (named("retries = -1"), "upstream[0].retries: -1 is not a whole number, 0 or more"),
            (named("max_fails = 1.5"), "upstream[0].max_fails: 1.5 is not a whole number, 0 or more"),
            (named("fail_timeout = 0"),
             "upstream[0].fail_timeout: 0 is not a number of seconds from 0.1 to 1e9"),
        ])

    def test_cookie(self):
        """
        The affinity cookie's table.
        """
        self.assertErrors([
            (named("cookie = {}"),
             "upstream[0].cookie: is used only with affinity = 'cookie' or 'sockjs'"),
            (named('affinity = "cookie"', "cookie = 1"), "upstream[0].cookie: 1 is not a table"),
            (named('affinity = "cookie"', 'cookie = { name = "a b" }'),
             "upstream[0].cookie.name: 'a b' is not a cookie name (letters, digits and "
             "!#$%&'*+.^_`|~-)"),
            (named('affinity = "cookie"', 'cookie = { path = "/a;b" }'),
             "upstream[0].cookie.path: '/a;b' is not printable ASCII text without spaces or ';'"),
            (named('affinity = "cookie"', 'cookie = { same_site = "lax" }'),
             "upstream[0].cookie.same_site: 'lax' is not one of 'Lax', 'Strict', 'None'"),
            (named('affinity = "cookie"', 'cookie = { same_site = "None" }'),
             "upstream[0].cookie.same_site: 'None' needs secure = true (browsers refuse it otherwise)"),
            (named('affinity = "cookie"', "cookie = { max_age = -1 }"),
             "upstream[0].cookie.max_age: -1 is not a whole number, 0 or more"),
            (named('affinity = "cookie"', 'cookie = { nme = "x" }'),
             "upstream[0].cookie.nme: unknown key (did you mean 'name'?); known keys here are "
             "domain, http_only, max_age, name, path, same_site, secure"),
        ])

    def test_check(self):
        """
        The active check's table.
        """
        self.assertErrors([
            (named("check = 5"), "upstream[0].check: 5 is not a table"),
            (named('check = { type = "udp" }'),
             "upstream[0].check.type: 'udp' is not one of 'http', 'tcp'"),
            (named('check = { type = "tcp", path = "/" }'),
             "upstream[0].check.path: is for type = 'http' checks; a 'tcp' check only connects"),
            (named('check = { type = "tcp", status = 200 }'),
             "upstream[0].check.status: is for type = 'http' checks; a 'tcp' check only connects"),
            (named('check = { path = "health" }'),
             "upstream[0].check.path: 'health' is not a path starting with '/', in printable "
             "ASCII without spaces"),
            (named("check = { status = 99 }"),
             "upstream[0].check.status: 99 is not an HTTP status from 100 to 599, or a list of them"),
            (named("check = { status = [] }"),
             "upstream[0].check.status: [] is not an HTTP status from 100 to 599, or a list of them"),
            (named("check = { interval = 0 }"),
             "upstream[0].check.interval: 0 is not a number of seconds from 0.1 to 1e9"),
            (named("check = { rise = 0 }"),
             "upstream[0].check.rise: 0 is not a whole number from 1 to 100"),
            (named("check = { fall = 101 }"),
             "upstream[0].check.fall: 101 is not a whole number from 1 to 100"),
            (named("check = { intervl = 1 }"),
             "upstream[0].check.intervl: unknown key (did you mean 'interval'?); known keys "
             "here are fall, interval, path, rise, status, timeout, type"),
        ])

    def test_routes(self):
        """
        A route naming an upstream, checked against it.
        """
        prefix = ['path = "/"', 'upstream = "u"']
        self.assertErrors([
            (named(routes=[prefix + ['backend = "http://b/"']]),
             "route[0]: needs exactly one of 'backend' and 'upstream'"),
            (named(routes=[['path = "/"', 'upstream = "v"']]),
             "route[0].upstream: 'v' is not the name of an [[upstream]]; the known names are 'u'"),
            (LISTEN + '[[route]]\npath = "/"\nupstream = "v"\n',
             "route[0].upstream: 'v' is not the name of an [[upstream]]; there are none"),
            (named(routes=[['path = "/"', "upstream = 5"]]), "route[0].upstream: 5 is not a string"),
            (named(routes=[['path = "/"']]), "route[0].backend: is required and missing"),
            (named(routes=[prefix + ["backend_tls = { verify = false }"]]),
             "route[0].backend_tls: the members of upstream 'u' do not use TLS (https:// or wss://)"),
            (named() + '[[host]]\nnames = ["a.example"]\n[[host.route]]\npath = "/"\nupstream = "w"\n',
             "host[0].route[0].upstream: 'w' is not the name of an [[upstream]]; the known "
             "names are 'u'"),
        ])

    def test_routeGroupsAndPaths(self):
        """
        C{$N} in the members' path and a C{match:N} hash key need a match
        route with the group; a prefix route and the members' path follow
        Apache's trailing-slash rule.
        """
        def groups(members, route, *more):
            return upstream('name = "u"', "members = " + members, *more,
                            routes=[route + ['upstream = "u"']])

        self.assertErrors([
            (groups('["http://a/x/$1"]', ['path = "/"']),
             "route[0].upstream: the members of upstream 'u' use $1 but only 'match' routes have groups"),
            (groups('["http://a/x/$2"]', ["match = '^/(a)'"]),
             "route[0].upstream: the members of upstream 'u' use $2 but 'match' has only 1 group"),
            (groups('["http://a/"]', ['path = "/"'], 'policy = "hash"', 'hash = "match:1"'),
             "route[0].upstream: upstream 'u' hashes on match:1 but only 'match' routes have groups"),
            (groups('["http://a/"]', ["match = '^/(a)/(b)'"], 'policy = "hash"', 'hash = "match:3"'),
             "route[0].upstream: upstream 'u' hashes on match:3 but 'match' has only 2 groups"),
            (groups('["http://a/base/"]', ['path = "/app"']),
             "route[0]: path '/app' and the path of the members of upstream 'u' ('/base/') must "
             "both end with '/' or both not (Apache ProxyPass rule)"),
            (groups('["http://a/"]', ['path = "/"', "match = '^/'"]),
             "route[0]: needs exactly one of 'path' and 'match'"),
            (groups('["http://a/"]', ["match = '^/(a'"]),
             "route[0].match: '^/(a' is not a valid regular expression: missing ), "
             "unterminated subpattern at position 2"),
        ])

    def test_routesShareTLS(self):
        """
        The routes of one upstream check its members' TLS the same way.
        """
        text = upstream('name = "u"', 'members = ["https://a/", "https://b/"]', routes=[
            ['path = "/"', 'upstream = "u"', 'backend_tls = { server_name = "x" }'],
            ['path = "/y/"', 'upstream = "u"'],
        ])
        self.assertErrors([
            (text, "route[1].backend_tls: differs from that of route[0], which uses upstream 'u' "
                   "too: the routes of one upstream check its members' TLS the same way"),
        ])


def config(*lines, members=3, weights=None, urls=None):
    """
    A parsed config with an upstream C{app} of C{members} members
    (127.0.0.1 ports 1001, 1002, ...) and C{lines}.
    """
    weights = weights or [1] * (len(urls) if urls else members)
    urls = urls or ["http://127.0.0.1:{}/".format(1001 + n) for n in range(len(weights))]
    listed = ", ".join('{{ url = "{}", weight = {} }}'.format(u, w) for u, w in zip(urls, weights))
    return parseConfig(upstream('name = "app"', "members = [" + listed + "]", *lines))


def registry(parsed, clock=None, probe=None):
    """
    A started registry of C{parsed}'s upstreams on C{clock}.
    """
    kwargs = {"probe": probe} if probe is not None else {}
    result = Upstreams.fromConfig(parsed, clock or Clock(), None, **kwargs)
    result.start()
    return result


def view(path=b"/", cookie=None, headers=(), address="192.0.2.1"):
    """
    A L{selectionRequest} of a path, with a C{Cookie} header when given.
    """
    headers = list(headers)
    if cookie is not None:
        headers.append((b"Cookie", [cookie]))
    return selectionRequest(address, headers, path)


def sockjs(session, transport=b"xhr", robust=None, reconnect=False):
    """
    The path of a Shiny Server SockJS request.
    """
    if robust is None:
        return b"/app/__sockjs__/123/" + session + b"/" + transport
    flag = b"o=" if reconnect else b"n="
    return b"/app/__sockjs__/" + flag + robust + b"/123/" + session + b"/" + transport


class ChoiceTests(SynchronousTestCase):
    """
    Choices without affinity, and what they cost the request path.
    """

    def test_memberProvidesInterface(self):
        """
        A member state provides L{IUpstreamMember}.
        """
        member = registry(config()).get("app").members[0]
        self.assertTrue(verifyObject(IUpstreamMember, member))

    def test_needsRequest(self):
        """
        Only the C{hash} policy and affinity read the request; otherwise
        the request path passes none.
        """
        cases = [
            ((), False),
            (('policy = "least_conn"',), False),
            (('policy = "random_two"',), False),
            (('policy = "hash"',), True),
            (('affinity = "sockjs"',), True),
            (('affinity = "cookie"',), True),
        ]
        for lines, expected in cases:
            self.assertEqual(registry(config(*lines)).get("app").needsRequest, expected, lines)

    def test_roundRobinExact(self):
        """
        Round robin through the registry: 10,000 choices over weights
        3, 2, 1 are exactly 5000, 3333 and 1667, with no cookie.
        """
        app = registry(config(weights=[3, 2, 1])).get("app")
        choices = [app.choose() for _ in range(10000)]
        counts = Counter(choice.member.backend.port for choice in choices)
        self.assertEqual(counts, {1001: 5000, 1002: 3333, 1003: 1667})
        self.assertEqual({choice.setCookie for choice in choices}, {None})

    def test_policiesSpread(self):
        """
        Every policy spreads 10,000 new requests by weight within 5% (the
        hash policy over 10,000 client addresses).  Random choices are
        drawn from a seeded generator, so that the test cannot fail by
        chance.
        """
        import random

        from proxyws import balancing

        seeded = random.Random
        self.patch(balancing.random, "Random", lambda: seeded(6455))
        for policy in ["round_robin", "least_conn", "random_two", "hash"]:
            app = registry(config('policy = "{}"'.format(policy), weights=[3, 2, 1])).get("app")
            counts = Counter(
                app.choose(view(address="10.0.{}.{}".format(n // 200, n % 200))).member.weight
                for n in range(10000)
            )
            for weight in (3, 2, 1):
                expected = 10000 * weight / 6
                self.assertLessEqual(abs(counts[weight] - expected), 0.05 * expected, (policy, counts))

    def test_leastConnectionsWithWebSockets(self):
        """
        Open websockets count as connections for as long as they are open:
        long-lived websockets fill the members evenly, a member whose
        websockets close takes the next ones, and ended requests stop
        counting.
        """
        app = registry(config('policy = "least_conn"')).get("app")
        for _ in range(30):
            member = app.choose().member
            member.opened()
            member.closed()
            member.webSocketOpened()
        self.assertEqual([m.websockets for m in app.members], [10, 10, 10])
        self.assertEqual([m.connections for m in app.members], [10, 10, 10])
        for _ in range(4):
            app.members[2].webSocketClosed()
        self.assertEqual([app.choose().member.index for _ in range(3)], [2, 2, 2])
        held = app.choose().member
        for _ in range(4):
            held.opened()
        self.assertEqual([m.connections for m in app.members], [10, 10, 10])
        self.assertEqual(held.snapshot()["requests"], 4)
        for _ in range(4):
            held.closed()
        self.assertIs(app.choose().member, held)

    def test_retryExcludes(self):
        """
        A retry leaves out the members already tried; with none left, the
        upstream is unavailable.
        """
        app = registry(config()).get("app")
        first = app.choose().member
        second = app.choose(exclude={first}).member
        third = app.choose(exclude={first, second}).member
        self.assertEqual(len({first, second, third}), 3)
        self.assertRaises(UpstreamUnavailable, app.choose, None, {first, second, third})
        self.assertEqual(app.retries, 2)

    def test_fromTwistedRequest(self):
        """
        The request view is built from a twisted.web request's plain values;
        the cookies are read from its C{Cookie} header.
        """
        request = DummyRequest([b"app", b""])
        request.client = IPv4Address("TCP", "192.0.2.5", 40000)
        request.requestHeaders.setRawHeaders(b"X-User", [b"alice"])
        request.requestHeaders.setRawHeaders(b"Cookie", [b"sid=1"])
        built = selectionRequest(
            request.getClientAddress().host,
            request.requestHeaders.getAllRawHeaders(),
            request.uri.partition(b"?")[0],
        )
        self.assertEqual(
            (built.clientAddress, built.header(b"x-user"), built.cookie(b"sid")),
            ("192.0.2.5", b"alice", b"1"),
        )


class SockJSAffinityTests(SynchronousTestCase):
    """
    C{affinity = "sockjs"}: a session's requests on one member.
    """

    def setUp(self):
        self.parsed = config('affinity = "sockjs"', members=4)
        self.app = registry(self.parsed).get("app")

    def memberOf(self, path, app=None):
        """
        The name of the member C{path} goes to.
        """
        return (app or self.app).choose(view(path)).member.name

    def test_oneSessionOneMember(self):
        """
        Every transport of a session, xhr_send included, its websocket and
        its o= reconnect (a new SockJS session) land on one member, and
        carry no cookie.
        """
        robust = b"Xq3Lr8ZkP0aBcD1eF2"
        for n in range(20):
            session = b"s%d" % n
            paths = [sockjs(session, t, robust + session) for t in (b"xhr_streaming", b"xhr", b"xhr_send", b"websocket")]
            paths.append(sockjs(b"other", b"websocket", robust + session, reconnect=True))
            paths.append(b"/app/__sockjs__/n=" + robust + session + b"/info")
            self.assertEqual(len({self.memberOf(path) for path in paths}), 1, paths)
            plain = [sockjs(session, t) for t in (b"xhr", b"xhr_send", b"websocket")]
            self.assertEqual(len({self.memberOf(path) for path in plain}), 1)
        self.assertIsNone(self.app.choose(view(sockjs(b"s", b"xhr", b"r"))).setCookie)

    def test_sessionsSpread(self):
        """
        Sessions spread over the members (by weight), unlike their requests'
        round robin.
        """
        counts = Counter(self.memberOf(sockjs(b"%d" % n, b"websocket", b"id%d" % n)) for n in range(4000))
        self.assertEqual(len(counts), 4)
        self.assertTrue(all(abs(count - 1000) < 100 for count in counts.values()), counts)

    def test_twoRegistriesAgree(self):
        """
        Two registries of the same member list, as two processes would
        have, with the members even listed in another order, send every
        session to the same member.
        """
        reordered = config('affinity = "sockjs"', urls=["http://127.0.0.1:{}/".format(p) for p in (1004, 1002, 1001, 1003)])
        other = registry(reordered).get("app")
        paths = [sockjs(b"%d" % n, b"xhr", b"id%d" % n) for n in range(500)]
        self.assertEqual([self.memberOf(p) for p in paths], [self.memberOf(p, other) for p in paths])

    def test_twoProcessesAgree(self):
        """
        Two real processes, with different string hash seeds, load the same
        config and choose the same members as this one.
        """
        paths = [sockjs(b"%d" % n, b"xhr", b"id%d" % n).decode() for n in range(200)]
        directory = tempfile.mkdtemp()
        path = os.path.join(directory, "p.toml")
        with open(path, "w") as f:
            f.write(self.parsed.source)
        script = (
            "import json, sys\n"
            "from twisted.internet.task import Clock\n"
            "from proxyws.affinity import selectionRequest\n"
            "from proxyws.config import loadConfig\n"
            "from proxyws.upstream import Upstreams\n"
            "app = Upstreams.fromConfig(loadConfig(sys.argv[1]), Clock(), None).get('app')\n"
            "paths = json.loads(sys.stdin.read())\n"
            "print(json.dumps([app.choose(selectionRequest('::1', [], p.encode())).member.name"
            " for p in paths]))\n"
        )
        results = []
        for seed in ("1", "2"):
            env = dict(subprocessEnvironment(), PYTHONHASHSEED=seed)
            output = subprocess.run(
                [sys.executable, "-c", script, path], input=json.dumps(paths), env=env,
                capture_output=True, text=True, check=True, cwd=ROOT, timeout=60,
            ).stdout
            results.append(json.loads(output))
        here = [self.memberOf(p.encode()) for p in paths]
        self.assertEqual(results, [here, here])

    def test_downMovesOnlyItsSessions(self):
        """
        When a member goes down only its sessions move, spread over the
        others: about a quarter of them with four members.
        """
        paths = [sockjs(b"%d" % n, b"websocket", b"id%d" % n) for n in range(4000)]
        before = [self.memberOf(p) for p in paths]
        down = self.app.members[1]
        down.failed("connection refused")
        after = [self.memberOf(p) for p in paths]
        moved = [n for n in range(len(paths)) if before[n] != after[n]]
        self.assertTrue(all(before[n] == down.name for n in moved))
        self.assertEqual(len(moved), before.count(down.name))
        self.assertLess(abs(len(moved) / len(paths) - 0.25), 0.03)
        self.assertNotIn(down.name, after)

    def test_keylessUsesPolicy(self):
        """
        A request without a session key (the page, static files) goes by
        the policy, and carries no cookie when the upstream has none.
        """
        ports = [self.app.choose(view(b"/app/")).member.backend.port for _ in range(4)]
        self.assertEqual(ports, [1001, 1002, 1003, 1004])
        self.assertIsNone(self.app.choose(view(b"/app/shiny.js")).setCookie)

    def test_keylessWithCookie(self):
        """
        With a C{cookie} table, a request without a session key gets a
        member cookie, and the next one with it goes to that member.
        """
        app = registry(config('affinity = "sockjs"', "cookie = {}")).get("app")
        page = app.choose(view(b"/app/"))
        self.assertEqual(page.setCookie, b"proxyws_member=" + page.member.name.encode() + b"; Path=/; HttpOnly; SameSite=Lax")
        cookie = b"proxyws_member=" + page.member.name.encode()
        again = [app.choose(view(b"/app/x.js", cookie=cookie)) for _ in range(5)]
        self.assertEqual({c.member for c in again}, {page.member})
        self.assertEqual({c.setCookie for c in again}, {None})


class CookieAffinityTests(SynchronousTestCase):
    """
    C{affinity = "cookie"}: HAProxy's C{cookie SRV insert indirect nocache}.
    """

    def setUp(self):
        self.app = registry(config('affinity = "cookie"', 'cookie = { name = "SRV" }')).get("app")

    def test_insertedOnce(self):
        """
        A client without the cookie gets one naming its member (by name,
        not address); with it, it keeps the member and gets no new one,
        the websocket upgrade included.
        """
        first = self.app.choose(view())
        name = first.member.name.encode()
        self.assertEqual(first.setCookie, b"SRV=" + name + b"; Path=/; HttpOnly; SameSite=Lax")
        self.assertNotIn(b"127.0.0.1", first.setCookie)
        cookie = b"a=1; SRV=" + name
        upgrade = [(b"Upgrade", [b"websocket"]), (b"Connection", [b"Upgrade"])]
        later = [self.app.choose(view(cookie=cookie)) for _ in range(5)]
        later.append(self.app.choose(view(b"/ws", cookie=cookie, headers=upgrade)))
        self.assertEqual(later, [Choice(first.member)] * 6)
        self.assertEqual(NOCACHE, (b"Cache-Control", b"private"))

    def test_invalidCookie(self):
        """
        A cookie naming no member is ignored: the policy chooses and a
        valid cookie is inserted.
        """
        choice = self.app.choose(view(cookie=b"SRV=nobody"))
        self.assertEqual(choice.setCookie.split(b";")[0], b"SRV=" + choice.member.name.encode())

    def test_memberDown(self):
        """
        A client whose member is down goes to another, with a new cookie;
        once back, the member takes clients that still name it.
        """
        clock = Clock()
        app = registry(config('affinity = "cookie"'), clock).get("app")
        member = app.members[0]
        cookie = b"proxyws_member=" + member.name.encode()
        member.failed("connection refused")
        choice = app.choose(view(cookie=cookie))
        self.assertNotEqual(choice.member, member)
        self.assertEqual(choice.setCookie.split(b";")[0], b"proxyws_member=" + choice.member.name.encode())
        clock.advance(10)
        self.assertEqual(app.choose(view(cookie=cookie)), Choice(member))


class DrainTests(SynchronousTestCase):
    """
    A member with C{drain = true} takes no new sessions and keeps its own.
    """

    def drain(self, app, parsed, index):
        """
        Reload C{parsed} with member C{index} draining.
        """
        text = parsed.source.replace(
            "http://127.0.0.1:{}/\", weight = 1 }}".format(1001 + index),
            "http://127.0.0.1:{}/\", weight = 1, drain = true }}".format(1001 + index),
        )
        self.registry.update(parseConfig(text))
        self.assertTrue(app.members[index].draining)

    def test_noNewChoices(self):
        """
        A draining member gets no new request; its open websockets stay
        counted; its state and the log say so.
        """
        log = captureLog(self)
        parsed = config()
        self.registry = registry(parsed)
        app = self.registry.get("app")
        app.members[1].webSocketOpened()
        self.drain(app, parsed, 1)
        self.assertNotIn(1002, {app.choose().member.backend.port for _ in range(10)})
        self.assertEqual(app.members[1].snapshot()["state"], "draining")
        self.assertEqual(app.members[1].websockets, 1)
        self.assertEqual(log, [
            "upstream app member {} (http://127.0.0.1:1002/) draining: no new "
            "sessions".format(app.members[1].name),
        ])
        self.registry.update(parsed)
        self.assertFalse(app.members[1].draining)
        self.assertEqual(log[1:], [
            "upstream app member {} (http://127.0.0.1:1002/) no longer "
            "draining".format(app.members[1].name),
        ])

    def test_cookieSessionsStay(self):
        """
        Clients whose cookie names a draining member stay on it; new clients
        go elsewhere.
        """
        parsed = config('affinity = "cookie"')
        self.registry = registry(parsed)
        app = self.registry.get("app")
        member = app.members[0]
        cookie = b"proxyws_member=" + member.name.encode()
        self.drain(app, parsed, 0)
        self.assertEqual(app.choose(view(cookie=cookie)), Choice(member))
        self.assertNotIn(member, {app.choose(view()).member for _ in range(10)})

    def test_sockjsSessionsStay(self):
        """
        SockJS sessions that were on a draining member stay there; new
        sessions whose key ranks it first go to the member ranked next.
        """
        parsed = config('affinity = "sockjs"')
        self.registry = registry(parsed)
        app = self.registry.get("app")
        member = app.members[2]
        old = [sockjs(b"%d" % n, b"xhr", b"old%d" % n) for n in range(300)]
        mine = [p for p in old if app.choose(view(p)).member is member]
        new = [sockjs(b"%d" % n, b"xhr", b"new%d" % n) for n in range(300)]
        # Hashing alone would put some of each on the member.
        self.assertTrue(mine)
        self.assertTrue([p for p in new if rendezvous(hash64(sockjsKey(p)), app.members) is member])
        self.drain(app, parsed, 2)
        for path in mine:
            self.assertIs(app.choose(view(path)).member, member)
            self.assertIs(app.choose(view(path.replace(b"/xhr", b"/websocket"))).member, member)
        self.assertNotIn(member, {app.choose(view(p)).member for p in new})

    def test_allDraining(self):
        """
        When every member drains, new sessions find none; sticky ones still
        do.
        """
        parsed = parseConfig(upstream(
            'name = "app"', 'affinity = "cookie"',
            'members = [{ url = "http://a/", name = "a", drain = true }, '
            '{ url = "http://b/", name = "b", drain = true }]'))
        app = registry(parsed).get("app")
        self.assertRaises(UpstreamUnavailable, app.choose, view())
        self.assertEqual(app.choose(view(cookie=b"proxyws_member=b")), Choice(app.members[1]))


class UnavailableTests(SynchronousTestCase):
    """
    Every member down.
    """

    def test_passive(self):
        """
        With every member down, the choice raises an error the request path
        answers with 503 and C{Retry-After}: the seconds until the first
        member comes back.
        """
        clock = Clock()
        app = registry(config(members=2), clock).get("app")
        app.members[0].failed("connection refused")
        clock.advance(4)
        app.members[1].failed("connection refused")
        error = self.assertRaises(UpstreamUnavailable, app.choose)
        self.assertIsInstance(error, ServiceUnavailable)
        self.assertEqual((error.status, error.retryAfter, error.upstream), (503, 6, "app"))
        self.assertEqual(error.detail, "no member of upstream app is available")
        sockjsApp = registry(config('affinity = "sockjs"', members=2), clock).get("app")
        for member in sockjsApp.members:
            member.failed("refused")
        self.assertRaises(UpstreamUnavailable, sockjsApp.choose, view(sockjs(b"s", b"xhr")))
        clock.advance(6)
        self.assertEqual(app.choose().member, app.members[0])

    def test_active(self):
        """
        Held down by checks, a member may be back after C{rise} intervals.
        """
        clock, probe = Clock(), FakeProbe()
        app = registry(config("check = { interval = 3, rise = 2, fall = 1 }", members=2), clock, probe).get("app")
        clock.advance(0)
        probe.answer({1001: (False, "refused"), 1002: (False, "refused")})
        error = self.assertRaises(UpstreamUnavailable, app.choose)
        self.assertEqual(error.retryAfter, 6)


class RegistryTests(SynchronousTestCase):
    """
    The registry: reloads, status and gauges.
    """

    def test_updateKeepsState(self):
        """
        A reload keeps the state of members whose URL and TLS settings did
        not change (open connections, being down), takes their new weight
        and drain, starts new members afresh and retires removed ones (what
        their requests still report is not counted); the upstream object
        stays the same.
        """
        clock = Clock()
        upstreams = registry(config(members=3), clock)
        app = upstreams.get("app")
        kept, gone = app.members[0], app.members[2]
        kept.webSocketOpened()
        kept.failed("connection refused")
        gone.opened()
        upstreams.update(config(urls=["http://127.0.0.1:1001/", "http://127.0.0.1:1009/"], weights=[5, 1]))
        self.assertIs(upstreams.get("app"), app)
        self.assertIs(app.members[0], kept)
        self.assertEqual((kept.websockets, kept.up, kept.weight), (1, False, 5))
        self.assertEqual((app.members[1].backend.port, app.members[1].up), (1009, True))
        self.assertEqual(clock.getDelayedCalls()[0].getTime(), 10)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(10)
        self.assertTrue(kept.up)
        gone.failed("connection refused")
        gone.closed()
        self.assertEqual((clock.getDelayedCalls(), gone.up, gone.requests), ([], True, 0))

    def test_updateUpstreams(self):
        """
        Upstreams removed by a reload are gone; new ones are there.
        """
        upstreams = registry(config())
        upstreams.update(parseConfig(upstream('name = "other"', MEMBERS)))
        self.assertRaises(KeyError, upstreams.get, "app")
        self.assertEqual([u.name for u in upstreams], ["other"])

    def test_updateRestartsChecks(self):
        """
        Checks restart when their settings change (kept members keep their
        counts); removing them brings members they held down back up.
        """
        clock, probe = Clock(), FakeProbe()
        upstreams = registry(config("check = { interval = 1, fall = 1 }"), clock, probe)
        app = upstreams.get("app")
        clock.advance(0)
        probe.answer({1001: (False, "refused"), 1002: OK_RESULT, 1003: OK_RESULT})
        self.assertFalse(app.members[0].up)
        upstreams.update(config("check = { interval = 2, fall = 1, rise = 3 }"))
        self.assertEqual(probe.pending, [])
        clock.advance(0)
        self.assertEqual(len(probe.pending), 3)
        probe.answer({1001: OK_RESULT, 1002: OK_RESULT, 1003: OK_RESULT})
        self.assertFalse(app.members[0].up)
        upstreams.update(config())
        self.assertTrue(app.members[0].up)
        self.assertEqual(app.members[0].why, "active checks removed")
        clock.advance(5)
        self.assertEqual(probe.pending, [])

    def test_updateWithNewTLSPolicy(self):
        """
        A reload with a new TLS policy (certificates read again) restarts
        the checks with it, members unchanged.
        """
        clock, seen = Clock(), []

        def probe(reactor, backend, check, tlsPolicy):
            seen.append(tlsPolicy)
            return Deferred()

        upstreams = Upstreams.fromConfig(config("check = {}"), clock, "old", probe=probe)
        upstreams.start()
        clock.advance(0)
        upstreams.update(config("check = {}"), tlsPolicy="new")
        clock.advance(0)
        self.assertEqual(seen, ["old"] * 3 + ["new"] * 3)
        upstreams.stop()

    def test_snapshotAndGauges(self):
        """
        The status page's plain dicts, and the gauges' rows.
        """
        clock = Clock()
        upstreams = registry(config(members=2), clock)
        app = upstreams.get("app")
        first, second = app.members
        first.webSocketOpened()
        first.opened()
        clock.advance(3)
        second.failed("connection refused")
        snapshot = upstreams.snapshot()
        self.assertEqual(list(snapshot), ["app"])
        self.assertEqual(
            {k: snapshot["app"][k] for k in ("name", "policy", "affinity", "retries")},
            {"name": "app", "policy": "round_robin", "affinity": "none", "retries": 1},
        )
        self.assertEqual(snapshot["app"]["members"][1], {
            "name": second.name, "url": "http://127.0.0.1:1002/", "weight": 1,
            "state": "down", "up": False, "draining": False, "connections": 0,
            "requests": 0, "websockets": 0, "failures": 0,
            "lastFailure": "connection refused", "lastCheck": None, "downSince": 3.0,
            "why": "1 failure within 10 s, the last: connection refused",
        })
        json.dumps(snapshot)
        self.assertEqual(upstreams.gauges(), [
            ("app", first.name, True, 2, 1),
            ("app", second.name, False, 0, 0),
        ])

    def test_stop(self):
        """
        Stopping leaves no timer behind.
        """
        clock = Clock()
        upstreams = registry(config("check = {}"), clock, FakeProbe())
        upstreams.get("app").members[0].failed("refused")
        upstreams.stop()
        self.assertEqual(clock.getDelayedCalls(), [])


OK_RESULT = (True, "HTTP status 200")


class Named(Resource):
    """
    A backend answering with its name.
    """

    isLeaf = True

    def __init__(self, name):
        Resource.__init__(self)
        self.name = name

    def render_GET(self, request):
        """
        Answer with the name.
        """
        return self.name


class ServerTests(TestCase):
    """
    A config with an upstream route runs in the server.
    """

    @inlineCallbacks
    def test_upstreamRouteServes(self):
        """
        The server starts on a config whose route names an upstream, and a
        request through it is answered by one of the members.
        """
        ports = [startBackend(self, Named(name))[1] for name in (b"one", b"two")]
        members = ", ".join('"http://127.0.0.1:{}/"'.format(port) for port in ports)
        text = (
            '[[listen]]\naddress = "127.0.0.1"\nport = 0\n'
            '[[upstream]]\nname = "app"\nmembers = [{}]\n'
            '[[route]]\npath = "/"\nupstream = "app"\n'.format(members)
        )
        service, port, log = startProxy(self, text)
        answer = yield rawRequest(
            port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer)
        self.assertIn(answer.rpartition(b"\r\n\r\n")[2], (b"one", b"two"))
