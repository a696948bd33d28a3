"""
Tests for L{proxyws.plugins} and L{proxyws.filters}: discovery, config
references, building with every problem named, isolation of each call, and
a route's request filters, authenticators and response filters on the HTTP
path, driven without sockets (the harness of L{tests.test_httpproxy}).
"""

import os
import tempfile

import attr
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from proxyws import plugins
from proxyws.access import parseHtpasswd
from proxyws.balancing import selectorFor
from proxyws.bundled.cors import corsPlugin
from proxyws.bundled.headers import Headers, RequestHeaders, ResponseHeaders, headersPlugin
from proxyws.bundled.jwtauth import jwtPlugin
from proxyws.bundled.wsaudit import auditPlugin
from proxyws.bundled.wslimit import limitPlugin
from proxyws.config import parseConfig
from proxyws.errors import ConfigError, PluginFailed
from proxyws.filters import FilteredRouteHandler
from proxyws.gate import HtpasswdAuthenticator, htpasswdPlugin
from proxyws.httpproxy import HTTPRouteHandler
from proxyws.interfaces import (
    IAuthenticator,
    IBackendSelector,
    IRequestFilter,
    IResponseFilter,
    IRouteHandler,
    IWebSocketFilter,
)
from proxyws.plugins import (
    GuardedSelector,
    Plugin,
    PluginOptions,
    PluginReference,
    buildPlugins,
    installedPlugins,
)
from proxyws.pluginvalues import Close, Response, checkResponse
from proxyws.reader import shown
from proxyws.wsproxy import WebSocketRouteHandler

from .plugintools import (
    Failing,
    LastMember,
    Slow,
    Tagger,
    TokenAuthenticator,
    Waiting,
    factoryOf,
    withPlugins,
)
from .test_httpproxy import OK, ProxyTestCase, parseResponses

# The plugins proxyws ships, by entry point name.
SHIPPED = ["cors", "headers", "htpasswd", "jwt", "ws-audit", "ws-limit"]

INSTALLED = "cors, headers, htpasswd, jwt, ws-audit, ws-limit"

BASE = """
[[listen]]
address = "127.0.0.1"
port = 8080

"""


def config(text, filename="/tmp/p.toml"):
    """
    A config of a listener and C{text}.
    """
    return parseConfig(BASE + text, filename)


def captureLog(testCase):
    """
    Record the log events of the test.

    @return: the L{list} they go to.
    """
    events = []
    globalLogPublisher.addObserver(events.append)
    testCase.addCleanup(globalLogPublisher.removeObserver, events.append)
    return events


def texts(events, start):
    """
    @return: the formatted texts of C{events} whose format starts with
        C{start}.
    """
    from twisted.logger import formatEvent

    return [formatEvent(e) for e in events if (e.get("log_format") or "").startswith(start)]


class InterfaceTests(SynchronousTestCase):
    """
    C{verifyObject} on every implementation of the plugin interfaces.
    """

    def setUp(self):
        self.directory = tempfile.mkdtemp()
        os.environ["PROXYWS_TEST_JWT"] = "secret"
        self.addCleanup(os.environ.pop, "PROXYWS_TEST_JWT")

    def options(self, **table):
        """
        @return: L{PluginOptions} of C{table}, relative to a temporary folder.
        """
        return PluginOptions(table, self.directory)

    def test_shippedPlugins(self):
        """
        Each shipped plugin's factory returns a provider that C{verifyObject}
        accepts for each interface it declares.
        """
        users = os.path.join(self.directory, "users")
        with open(users, "w") as f:
            f.write("alice:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=\n")
        made = [
            (headersPlugin(self.options(set={"A": "b"})), [IResponseFilter]),
            (headersPlugin(self.options(request_set={"A": "b"})), [IRequestFilter]),
            (
                headersPlugin(self.options(set={"A": "b"}, request_remove=["B"])),
                [IRequestFilter, IResponseFilter],
            ),
            (corsPlugin(self.options(origins=["*"])), [IRequestFilter, IResponseFilter]),
            (limitPlugin(self.options(max_messages=3)), [IWebSocketFilter]),
            (auditPlugin(self.options(path="a.log")), [IWebSocketFilter]),
            (jwtPlugin(self.options(secret_env="PROXYWS_TEST_JWT")), [IAuthenticator]),
            (htpasswdPlugin(self.options(file="users")), [IAuthenticator]),
        ]
        for provider, interfaces in made:
            for interface in interfaces:
                self.assertTrue(verifyObject(interface, provider), (provider, interface))

    def test_headerClasses(self):
        """
        The three classes of the C{headers} plugin provide what their names
        say.
        """
        self.assertTrue(verifyObject(IRequestFilter, RequestHeaders(None)))
        self.assertTrue(verifyObject(IResponseFilter, ResponseHeaders()))
        for interface in (IRequestFilter, IResponseFilter):
            self.assertTrue(verifyObject(interface, Headers(None, None)))

    def test_htpasswdAuthenticator(self):
        """
        L{HtpasswdAuthenticator} provides L{IAuthenticator}.
        """
        htpasswd = parseHtpasswd(b"alice:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=\n")
        self.assertTrue(verifyObject(IAuthenticator, HtpasswdAuthenticator(htpasswd)))

    def test_filteredRouteHandler(self):
        """
        L{FilteredRouteHandler} provides L{IRouteHandler}, and has what the
        handler it wraps has (the status reads C{inFlight}).
        """
        route = config('[[route]]\npath = "/"\nbackend = "http://b/"\n').routes[0]
        inner = HTTPRouteHandler(MemoryReactorClock(), None, route)
        wrapper = FilteredRouteHandler(inner, None)
        self.assertTrue(verifyObject(IRouteHandler, wrapper))
        inner.inFlight = 3
        self.assertEqual((wrapper.inFlight, wrapper.responseFilter), (3, None))

    def test_guardedSelector(self):
        """
        L{GuardedSelector} provides L{IBackendSelector}.
        """
        plugin = Plugin("last", "upstream[0].policy", LastMember())
        self.assertTrue(verifyObject(IBackendSelector, GuardedSelector(plugin)))

    def test_testPlugins(self):
        """
        The tests' own plugins provide what they declare (so that a test
        failing is not a test plugin that is wrong).
        """
        for provider in (Tagger("a"), Failing(), Waiting(), Slow(0), TokenAuthenticator()):
            for interface in (IRequestFilter, IResponseFilter, IWebSocketFilter, IAuthenticator):
                if interface.providedBy(provider):
                    self.assertTrue(verifyObject(interface, provider))


class DiscoveryTests(SynchronousTestCase):
    """
    Plugins are found through the C{proxyws.plugins} entry points.
    """

    def test_shippedAreInstalled(self):
        """
        proxyws's own plugins are entry points of the group, found as any
        other package's are, and each loads to a callable factory.
        """
        found = installedPlugins()
        self.assertEqual([name for name in found if name in SHIPPED], SHIPPED)
        for name in SHIPPED:
            self.assertTrue(callable(found[name].load()))
            self.assertEqual(found[name].group, "proxyws.plugins")


class ReferenceTests(SynchronousTestCase):
    """
    C{plugins} lists and plugin policies in the config.
    """

    def test_lists(self):
        """
        C{[server]}, C{[[host]]} and C{[[route]]} C{plugins} lists become
        L{PluginReference}s: a name, the rest of the table as options, and
        the key path.
        """
        loaded = config(
            '[server]\nplugins = [{ name = "a", x = 1 }]\n\n'
            '[[route]]\npath = "/"\nbackend = "http://b/"\n'
            'plugins = [{ name = "b" }, { name = "c", set = { K = "v" } }]\n\n'
            '[[host]]\nnames = ["h"]\nplugins = [{ name = "d" }]\n'
        )
        self.assertEqual(
            loaded.server.plugins, (PluginReference("a", {"x": 1}, "server.plugins[0]"),)
        )
        self.assertEqual(
            loaded.routes[0].plugins,
            (
                PluginReference("b", {}, "route[0].plugins[0]"),
                PluginReference("c", {"set": {"K": "v"}}, "route[0].plugins[1]"),
            ),
        )
        self.assertEqual(loaded.hosts[0].plugins, (PluginReference("d", {}, "host[0].plugins[0]"),))
        self.assertEqual(loaded.routes[0].plugins[1].filename, "/tmp/p.toml")
        self.assertEqual(loaded.server.pluginTimeout, 10.0)

    def test_policy(self):
        """
        C{policy = { plugin = "name", ...options }} on an upstream: the
        policy reads C{"plugin:name"}, the reference keeps the options.
        """
        loaded = config(
            '[[upstream]]\nname = "u"\nmembers = ["http://a/", "http://b/"]\n'
            'policy = { plugin = "last", k = 2 }\n'
        )
        upstream = loaded.upstreams[0]
        self.assertEqual(upstream.policy, "plugin:last")
        self.assertEqual(
            upstream.policyPlugin, PluginReference("last", {"k": 2}, "upstream[0].policy")
        )
        self.assertEqual(upstream.policyPlugin.nameKeyPath, "upstream[0].policy.plugin")

    # A config's text -> its error.
    ERRORS = [
        (
            '[server]\nplugins = "headers"\n',
            "/tmp/p.toml: server.plugins: 'headers' is not a list of plugins, each a table "
            "such as { name = 'headers', set = { 'X-Frame-Options' = 'DENY' } }",
        ),
        (
            '[[route]]\npath = "/"\nbackend = "http://b/"\nplugins = ["headers"]\n',
            "/tmp/p.toml: route[0].plugins[0]: 'headers' is not a table such as "
            "{ name = 'headers', set = { 'X-Frame-Options' = 'DENY' } }",
        ),
        (
            '[[route]]\npath = "/"\nbackend = "http://b/"\nplugins = [{ set = {} }]\n',
            "/tmp/p.toml: route[0].plugins[0].name: is required and missing: the name of "
            "an installed plugin",
        ),
        (
            '[[host]]\nnames = ["h"]\nplugins = [{ name = 3 }]\n',
            "/tmp/p.toml: host[0].plugins[0].name: 3 is not a string: the name of an "
            "installed plugin",
        ),
        (
            '[[upstream]]\nname = "u"\nmembers = ["http://a/"]\npolicy = { k = 1 }\n',
            "/tmp/p.toml: upstream[0].policy.plugin: is required and missing: the name of "
            "an installed plugin",
        ),
        (
            '[server]\nplugin_timeout = 0\n',
            "/tmp/p.toml: server.plugin_timeout: 0 is not a number of seconds from 0.1 to 1e9",
        ),
    ]

    def test_errors(self):
        """
        Each malformed C{plugins} list or policy gives its exact error.
        """
        for text, message in self.ERRORS:
            error = self.assertRaises(ConfigError, config, text)
            self.assertEqual(str(error), message)


@implementer(IRequestFilter)
class _Declared:
    """
    Declares L{IRequestFilter} but lacks its method.
    """


class BuildTests(SynchronousTestCase):
    """
    L{buildPlugins}: each problem a config error naming file, key and value.
    """

    def build(self, text, available=None):
        """
        Build the plugins of C{text}.
        """
        return buildPlugins(config(text), MemoryReactorClock(), available)

    def problems(self, text, available=None):
        """
        @return: the texts of every problem of C{text}'s plugins.
        """
        error = self.assertRaises(ConfigError, self.build, text, available)
        return [str(problem) for problem in error.problems]

    def test_unknownName(self):
        """
        An unknown name lists the installed plugins, with the closest one.
        """
        [problem] = self.problems(
            '[[route]]\npath = "/"\nbackend = "http://b/"\nplugins = [{ name = "headerz" }]\n'
        )
        self.assertEqual(
            problem,
            "/tmp/p.toml: route[0].plugins[0].name: 'headerz' is not an installed plugin "
            "(did you mean 'headers'?); installed plugins: " + INSTALLED + " (a plugin is "
            "a package declaring a 'proxyws.plugins' entry point)",
        )

    def test_badOptions(self):
        """
        A factory's L{PluginOptionError} becomes a config error at the key
        path of the option, naming the value.
        """
        problems = self.problems(
            '[server]\nplugins = [{ name = "headers", set = { "X-A" = 3 } }]\n'
            '[[route]]\npath = "/"\nbackend = "http://b/"\n'
            'plugins = [{ name = "cors", origins = ["ftp//x"] }, { name = "ws-limit", max_messages = -1 }]\n'
            '[[host]]\nnames = ["h"]\nplugins = [{ name = "headers", sett = {} }]\n'
        )
        self.assertEqual(
            problems,
            [
                "/tmp/p.toml: server.plugins[0].set.X-A: 3 is not a header value (text "
                "without control characters) or a list of them",
                "/tmp/p.toml: host[0].plugins[0].sett: unknown option (did you mean 'set'?); "
                "this plugin's options are add, remove, request_add, request_remove, "
                "request_set, set",
                "/tmp/p.toml: route[0].plugins[0].origins[0]: 'ftp//x' is not an origin such "
                "as 'https://app.example.com', 'https://*.example.com' or '*'",
                "/tmp/p.toml: route[0].plugins[1].max_messages: -1 is not a whole number of "
                "at least 0",
            ],
        )

    def test_longValueCut(self):
        """
        A long value is shown cut, with its length.
        """
        self.assertEqual(shown("a" * 500), "'" + "a" * 100 + "\u2026' (500 characters)")
        [problem] = self.problems(
            '[[route]]\npath = "/"\nbackend = "http://b/"\n'
            'plugins = [{ name = "ws-limit", per = "' + "x" * 300 + '" }]\n'
        )
        self.assertIn("\u2026' (300 characters) is not a number", problem)

    def test_factoryRaises(self):
        """
        A factory raising something else than L{PluginOptionError} refuses
        its options with what it said.
        """

        def broken(options):
            raise TypeError("no good")

        [problem] = self.problems(
            '[[route]]\npath = "/"\nbackend = "http://b/"\nplugins = [{ name = "x" }]\n',
            {"x": broken},
        )
        self.assertEqual(
            problem,
            "/tmp/p.toml: route[0].plugins[0]: plugin 'x' refused its options: TypeError: no good",
        )

    def test_cannotLoad(self):
        """
        An entry point whose module cannot be imported is named.
        """

        class EntryPoint:
            def load(self):
                raise ImportError("No module named 'gone'")

        [problem] = self.problems(
            '[[route]]\npath = "/"\nbackend = "http://b/"\nplugins = [{ name = "x" }]\n',
            {"x": EntryPoint()},
        )
        self.assertEqual(
            problem,
            "/tmp/p.toml: route[0].plugins[0].name: plugin 'x' cannot be loaded: "
            "ImportError: No module named 'gone'",
        )

    def test_wrongInterfaces(self):
        """
        A provider of none of the interfaces a place takes, or one that does
        not implement what it declares, is refused.
        """
        problems = self.problems(
            '[[route]]\npath = "/"\nbackend = "http://b/"\n'
            'plugins = [{ name = "selector" }, { name = "declared" }]\n'
            '[[upstream]]\nname = "u"\nmembers = ["http://a/"]\npolicy = { plugin = "tagger" }\n',
            {
                "selector": factoryOf(LastMember()),
                "declared": factoryOf(_Declared()),
                "tagger": factoryOf(Tagger("t")),
            },
        )
        self.assertEqual(problems[0], (
            "/tmp/p.toml: route[0].plugins[0].name: plugin 'selector' provides none of "
            "IRequestFilter, IResponseFilter, IWebSocketFilter, IAuthenticator; it cannot "
            "be used here"
        ))
        self.assertTrue(problems[1].startswith(
            "/tmp/p.toml: route[0].plugins[1].name: plugin 'declared' does not implement "
            "IRequestFilter as declared: "
        ), problems[1])
        self.assertEqual(problems[2], (
            "/tmp/p.toml: upstream[0].policy.plugin: plugin 'tagger' provides none of "
            "IBackendSelector; it cannot be used here"
        ))

    def test_chainsInOrder(self):
        """
        A route's plugins are C{[server]}'s, then its host's, then its own;
        a reference shared by routes is built once, with its options.
        """
        factories = {name: factoryOf(Tagger(name)) for name in "abc"}
        built = self.build(
            '[server]\nplugins = [{ name = "a", k = 1 }]\n'
            '[[route]]\npath = "/"\nbackend = "http://b/"\nplugins = [{ name = "c" }]\n'
            '[[host]]\nnames = ["h"]\nplugins = [{ name = "b" }]\n'
            '  [[host.route]]\n  path = "/"\n  backend = "http://b/"\n  plugins = [{ name = "c" }]\n',
            factories,
        )
        self.assertEqual(len(factories["a"].options), 1)
        self.assertEqual(dict(factories["a"].options[0]), {"k": 1})
        self.assertEqual(factories["a"].options[0].directory, "/tmp")
        names = lambda index: [p.name for p, _ in built.routes[index].stages]
        self.assertEqual((names(0), names(1)), (["a", "c"], ["a", "b", "c"]))
        self.assertEqual(
            [p.name for p in built.routes[1].responseFilters], ["c", "b", "a"]
        )

    def test_noPlugins(self):
        """
        A config without plugins builds nothing, and no route has a chain.
        """
        built = self.build('[[route]]\npath = "/"\nbackend = "http://b/"\n')
        self.assertEqual((built.routes, built.plugins), ({}, ()))

    def test_policyPlugin(self):
        """
        An upstream with a plugin policy gets its selector from the plugin's
        factory, called through L{GuardedSelector}; the request is always
        given to it.
        """
        from proxyws.upstream import Upstream

        withPlugins(self, last=factoryOf(LastMember()))
        loaded = config(
            '[[upstream]]\nname = "u"\nmembers = ["http://a/", "http://b/", "http://c/"]\n'
            'policy = { plugin = "last" }\n'
        )
        buildPlugins(loaded, None)
        settings = loaded.upstreams[0]
        self.assertIsInstance(selectorFor(settings), GuardedSelector)
        upstream = Upstream(settings, MemoryReactorClock(), None, None)
        self.assertTrue(upstream.needsRequest)
        self.assertEqual(upstream.choose(None).member.name, settings.members[2].name)


class CallTests(SynchronousTestCase):
    """
    L{Plugin.call}: every call timed, isolated and timed out.
    """

    def setUp(self):
        self.clock = MemoryReactorClock()
        self.events = captureLog(self)

    def test_raises(self):
        """
        An exception is logged once, with the plugin's name, key path and
        traceback, and becomes L{PluginFailed}.
        """
        plugin = Plugin("broken", "route[0].plugins[0]", Failing(), self.clock)
        error = self.assertRaises(PluginFailed, plugin.call, "filterRequest", None)
        self.assertEqual(error.plugin, "broken")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(
            texts(self.events, "plugin {plugin}"),
            ["plugin broken (route[0].plugins[0]) failed in filterRequest"],
        )

    def test_slow(self):
        """
        A call that holds the event loop over L{plugins.SLOW_CALL} seconds
        is logged with the time it took; later slow calls within
        L{plugins.SLOW_LOG_INTERVAL} are counted into the next warning.
        """
        plugin = Plugin("slow", "route[0].plugins[0]", Slow(plugins.SLOW_CALL * 2), self.clock)
        for _ in range(3):
            plugin.call("filterRequest", None)
        [warning] = texts(self.events, "plugin {plugin} ({keyPath}) held")
        self.assertRegex(
            warning,
            r"plugin slow \(route\[0\]\.plugins\[0\]\) held the event loop [0-9.]+ ms in "
            r"filterRequest \(1 call\(s\) over 10 ms since the last warning\)",
        )
        quick = Plugin("quick", "route[0].plugins[1]", Slow(0), self.clock)
        quick.call("filterRequest", None)
        self.assertEqual(len(texts(self.events, "plugin {plugin} ({keyPath}) held")), 1)

    def test_deferred(self):
        """
        A L{Deferred} is returned as it is and fires with its result; one
        already fired gives its result at once.
        """
        waiting = Waiting()
        plugin = Plugin("w", "k", waiting, self.clock, timeout=5)
        result = plugin.call("filterRequest", None)
        self.assertNoResult(result)
        waiting.pending[0].callback("answer")
        self.assertEqual(self.successResultOf(result), "answer")
        fired = Plugin("f", "k", Tagger("x"), self.clock)
        self.assertIsNone(fired.call("filterResponse", None, _Fields()))

    def test_timeout(self):
        """
        A L{Deferred} that does not fire within the timeout is cancelled and
        fails with L{plugins.PluginTimeout}, logged once.
        """
        waiting = Waiting()
        plugin = Plugin("never", "route[1].plugins[0]", waiting, self.clock, timeout=5)
        result = plugin.call("filterRequest", None)
        self.clock.advance(4.9)
        self.assertNoResult(result)
        self.clock.advance(0.2)
        self.failureResultOf(result, plugins.PluginTimeout)
        self.assertEqual(waiting.cancelled, 1)
        self.assertEqual(
            texts(self.events, "plugin {plugin}"),
            ["plugin never (route[1].plugins[0]) did not answer filterRequest within 5 s"],
        )

    def test_deferredFails(self):
        """
        A L{Deferred} that fails is logged once and fails with
        L{PluginFailed}.
        """
        waiting = Waiting()
        plugin = Plugin("w", "k", waiting, self.clock)
        result = plugin.call("filterRequest", None)
        waiting.pending[0].errback(RuntimeError("later"))
        self.failureResultOf(result, PluginFailed)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class _Fields:
    """
    A stand-in response whose headers take additions.
    """

    headers = attr.make_class("H", [])()
    headers.addRawHeader = lambda name, value: None


class ValueTests(SynchronousTestCase):
    """
    What plugins answer is checked before it is used.
    """

    def test_responses(self):
        """
        A L{Response} that would split a head or has no final status is
        refused; a good one gives its phrase, fields and body as bytes.
        """
        self.assertEqual(
            checkResponse(Response.json(403, {"a": 1})),
            (b"Forbidden", [(b"Content-Type", b"application/json")], b'{"a":1}'),
        )
        for bad in (
            Response(101),
            Response(200, headers=[("X", "a\r\nInjected: 1")]),
            Response(200, headers=[("X Y", "a")]),
            Response(200, body=3),
            Response(200, phrase="OK\r\n"),
        ):
            self.assertRaises(ValueError, checkResponse, bad)

    def test_closes(self):
        """
        A L{Close} takes the codes an endpoint may send, and a short reason.
        """
        for code in (1000, 1008, 1011, 3000, 4999):
            Close(code)
        for code in (1004, 1005, 1006, 1015, 2000, 5000, "1000"):
            self.assertRaises(ValueError, Close, code)
        self.assertRaises(ValueError, Close, 1000, "x" * 124)


class ChainTests(ProxyTestCase):
    """
    A route's request filters, authenticators and response filters on the
    HTTP path.
    """

    def setUp(self):
        ProxyTestCase.setUp(self)
        self.events = captureLog(self)

    def start(self, *providers, server=""):
        """
        Build the proxy with C{providers} (named C{p0}, C{p1}, ...) as the
        route's plugins, and send a GET of C{/app/x}.

        @return: C{(client transport, backend transports)}.
        """
        withPlugins(self, **{"p%d" % n: factoryOf(p) for n, p in enumerate(providers)})
        names = ", ".join('{ name = "p%d" }' % n for n in range(len(providers)))
        route = 'path = "/app/"\nbackend = "http://127.0.0.1:9000/base/"\nplugins = [%s]\n' % names
        self.buildProxy(server=server, route=route)
        channel, self.client = self.connectClient()
        channel.dataReceived(b"GET /app/x HTTP/1.1\r\nHost: h\r\nX-Token: good\r\n\r\n")
        return self.client

    def backendRequest(self, answer=OK):
        """
        Accept the backend connection, answer with C{answer}.

        @return: the request head the backend got.
        """
        protocol, transport = self.acceptBackend()
        sent = transport.value()
        protocol.dataReceived(answer)
        return sent

    def response(self):
        """
        @return: C{(status code, headers as a list of pairs, body)}.
        """
        [(status, headers, body)] = parseResponses(self.client.value())
        return int(status.split(b" ")[1]), headers, body

    def test_routeWithoutPluginsUnchanged(self):
        """
        The handlers of a route without plugins are the plain ones: its
        requests and websockets do no work for plugins.
        """
        self.buildProxy()
        root = self.site.resource
        self.assertIs(type(root._http[0]), HTTPRouteHandler)
        self.assertIs(type(root._webSockets[0]), WebSocketRouteHandler)
        self.assertIsNone(root._http[0].responseFilter)
        self.assertIsNone(root._webSockets[0].messages)

    def test_filtersInOrder(self):
        """
        Request filters run in config order and see the changes of those
        before; response filters run in the reverse order.
        """
        self.start(Tagger("a"), Tagger("b"))
        sent = self.backendRequest()
        self.assertIn(b"\r\nX-Tags: a\r\nX-Tags: b\r\n", sent)
        code, headers, _ = self.response()
        self.assertEqual([v for n, v in headers if n == b"x-tags"], [b"b", b"a"])

    def test_target(self):
        """
        A request filter may send the request to another target on the
        route's backend.
        """
        self.start(Tagger("a", target="/other?q=1"))
        self.assertTrue(self.backendRequest().startswith(b"GET /other?q=1 HTTP/1.1\r\n"))

    def test_badTarget(self):
        """
        A target that is not a path is the plugin's failure: 500.
        """
        self.start(Tagger("a", target="http://elsewhere/"))
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertEqual(self.response()[0], 500)

    def test_answer(self):
        """
        A request filter's L{Response} answers the request; the backend is
        not contacted and the later filters do not run.
        """
        later = Tagger("b")
        self.start(Tagger("a", answer=403), later)
        self.assertEqual(self.reactor.tcpClients, [])
        code, headers, body = self.response()
        self.assertEqual((code, body), (403, b'{"tag":"a"}'))
        self.assertIn((b"content-type", b"application/json"), headers)
        self.assertEqual(later.requests, [])

    def test_deferred(self):
        """
        A request filter's L{Deferred}: the request waits for it, then goes
        on.
        """
        waiting = Waiting()
        self.start(waiting, Tagger("b"))
        self.assertEqual(self.reactor.tcpClients, [])
        waiting.pending[0].callback(None)
        self.assertIn(b"X-Tags: b\r\n", self.backendRequest())
        self.assertEqual(self.response()[0], 200)

    def test_deferredAnswers(self):
        """
        A L{Deferred} firing with a L{Response} answers the request.
        """
        waiting = Waiting()
        self.start(waiting)
        waiting.pending[0].callback(Response.redirect("https://x/", 307))
        code, headers, _ = self.response()
        self.assertEqual(code, 307)
        self.assertIn((b"location", b"https://x/"), headers)

    def test_neverFires(self):
        """
        A L{Deferred} that never fires: 504 after C{plugin_timeout}, logged.
        """
        waiting = Waiting()
        self.start(waiting, server="plugin_timeout = 3")
        self.reactor.advance(2.9)
        self.assertEqual(self.client.value(), b"")
        self.reactor.advance(0.2)
        code, _, body = self.response()
        self.assertEqual((code, body), (504, b"504 Gateway Timeout\n\na plugin of this route "
                                             b"did not answer in time\n"))
        self.assertEqual(waiting.cancelled, 1)
        self.assertEqual(len(texts(self.events, "plugin {plugin} ({keyPath}) did not")), 1)

    def test_clientLeavesWhileWaiting(self):
        """
        A client that leaves while a filter's L{Deferred} waits cancels it,
        and nothing is sent.
        """
        waiting = Waiting()
        self.start(waiting)
        self.client.loseConnection()
        self.assertEqual(waiting.cancelled, 1)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_raises(self):
        """
        A request filter that raises: 500, logged once with its name, and
        the next request on the route works as well as the filter lets it.
        """
        self.start(Failing())
        code, _, body = self.response()
        self.assertEqual((code, body), (
            500, b"500 Internal Server Error\n\nthe request could not be handled (plugin error)\n"
        ))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_wrongAnswer(self):
        """
        A request filter returning something else than L{None} or a
        L{Response}: 500, logged with what it returned.
        """
        @implementer(IRequestFilter)
        class Wrong:
            def filterRequest(self, request):
                return "yes"

        self.start(Wrong())
        self.assertEqual(self.response()[0], 500)
        self.assertEqual(
            texts(self.events, "plugin {plugin} ({keyPath}) failed: "),
            ["plugin p0 (route[0].plugins[0]) failed: filterRequest returned 'yes', not "
             "None or a Response"],
        )

    def test_responseFilterRaises(self):
        """
        A response filter that raises: the client gets 500 instead of the
        backend's response, and the backend connection is closed.
        """

        @implementer(IResponseFilter)
        class Broken:
            def filterResponse(self, request, response):
                raise ValueError("no")

        self.start(Broken())
        protocol, transport = self.acceptBackend()
        protocol.dataReceived(OK)
        self.assertEqual(self.response()[0], 500)
        self.assertFalse(transport.connected)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_framingFieldsDropped(self):
        """
        Framing fields a response filter sets are dropped: the proxy frames
        the body.
        """

        @implementer(IResponseFilter)
        class Framing:
            def filterResponse(self, request, response):
                response.headers.setRawHeaders(b"Content-Length", [b"99"])
                response.headers.setRawHeaders(b"X-Seen", [b"%d" % response.code])

        self.start(Framing())
        self.backendRequest()
        code, headers, body = self.response()
        self.assertEqual((code, body), (200, b"ok"))
        self.assertEqual([v for n, v in headers if n == b"content-length"], [b"2"])
        self.assertIn((b"x-seen", b"200"), headers)

    def test_authenticator(self):
        """
        An authenticator in the list: its L{Identity} goes to the access
        log's C{%u} and to the later plugins; its L{Response} refuses.
        """
        later = Tagger("b")
        self.start(TokenAuthenticator(), later)
        self.backendRequest()
        self.assertEqual(later.requests[0].user, "alice")
        self.assertEqual(later.requests[0].identity.claims, {"role": "admin"})
        self.client.loseConnection()
        self.assertIn(b" alice [", self.log.lines[0])
        channel, self.client = self.connectClient()
        channel.dataReceived(b"GET /app/x HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(self.response()[0], 401)
        self.assertEqual(len(self.reactor.tcpClients), 1)
