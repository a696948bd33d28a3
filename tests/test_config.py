"""
Tests for L{proxyws.config}: the values a config file produces, and the exact
text of every error it can raise.
"""

import os
import shutil
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from proxyws.schema import LISTEN_KEYS
from proxyws.config import (
    ROUTE_KEYS, SERVER_KEYS, Backend, Config, Listener, Route, ServerSettings,
    TLSSettings, loadConfig, parseConfig)
from proxyws.errors import ConfigError

# The example of the outside contract (shared/contract.md), word for word.
CONTRACT_EXAMPLE = """\
[server]
access_log = "/var/log/proxyws/access.log"   # or "-" for standard output
                                             # one line per request, Apache
                                             # combined format
[[listen]]
address = "127.0.0.1"       # IPv4 or IPv6 literal; "0.0.0.0" / "::"
port = 8080

[[listen]]
address = "0.0.0.0"
port = 8443
tls = { cert = "server.crt", key = "server.key" }   # PEM files

[[route]]                   # prefix route: Apache ProxyPass semantics
path = "/app/"
backend = "http://127.0.0.1:3838/"

[[route]]                   # regex route: Apache ProxyPassMatch semantics
match = '^/(.*/__sockjs__/[0-9]+/.*)'
backend = "ws://127.0.0.1:3838/$1"

[[route]]
host = "shiny.example.com"  # optional: only requests for this Host
path = "/"
backend = "https://10.0.0.5:8443/"
"""

# The smallest config that loads: one listener, no routes.
LISTEN = """\
[[listen]]
address = "127.0.0.1"
port = 8080
"""

MINIMAL = LISTEN + """
[[route]]
path = "/"
backend = "http://backend/"
"""

# The "known keys here" lists of the messages: the schema tables, sorted (the
# tables grow as features are added; the format of the list is what is fixed).
SERVER_KNOWN = ", ".join(sorted(SERVER_KEYS))
ROUTE_KNOWN = ", ".join(sorted(ROUTE_KEYS))


def route(*lines):
    """
    A config with one listener and one C{[[route]]} made of C{lines}.

    @param lines: the lines of the route table, such as C{'path = "/"'}.
    @return: the TOML text.
    """
    return LISTEN + "\n[[route]]\n" + "\n".join(lines) + "\n"


class ContractExampleTests(SynchronousTestCase):
    """
    The example config of the outside contract parses into the values it
    describes.
    """

    def setUp(self):
        self.config = parseConfig(
            CONTRACT_EXAMPLE, "/etc/proxyws/proxyws.toml")

    def test_exampleIsAConfig(self):
        """
        The example parses into a L{Config} naming its file.
        """
        self.assertIsInstance(self.config, Config)
        self.assertEqual(self.config.path, "/etc/proxyws/proxyws.toml")
        self.assertIsNone(self.config.demo)

    def test_exampleAccessLog(self):
        """
        An absolute access_log path is kept as written.
        """
        self.assertEqual(
            self.config.server.accessLog, "/var/log/proxyws/access.log")

    def test_exampleListeners(self):
        """
        Both listeners are read in order; TLS files are resolved against the
        directory of the config file.
        """
        self.assertEqual(self.config.listeners, (
            Listener(address="127.0.0.1", port=8080, tls=None),
            Listener(
                address="0.0.0.0", port=8443,
                tls=TLSSettings(
                    cert="/etc/proxyws/server.crt",
                    key="/etc/proxyws/server.key")),
        ))

    def test_examplePrefixRoute(self):
        """
        The first route is a prefix route to a plain HTTP backend, which also
        carries websockets over ws.
        """
        first = self.config.routes[0]
        self.assertEqual(first.index, 0)
        self.assertEqual(first.prefix, b"/app/")
        self.assertIsNone(first.match)
        self.assertIsNone(first.template)
        self.assertEqual(first.hosts, ())
        self.assertFalse(first.preserveHost)
        self.assertEqual(first.reverse, (b"/", b"/app/"))
        self.assertEqual(first.backend, Backend(
            url="http://127.0.0.1:3838/", secure=False, host="127.0.0.1",
            port=3838, path=b"/", httpScheme=b"http", wsScheme=b"ws",
            hostHeader=b"127.0.0.1:3838"))

    def test_exampleRegexRoute(self):
        """
        The second route is a regex route to a ws backend whose plain HTTP
        requests go over http; its template takes the group.
        """
        second = self.config.routes[1]
        self.assertEqual(second.index, 1)
        self.assertIsNone(second.prefix)
        self.assertEqual(
            second.match.pattern, b"^/(.*/__sockjs__/[0-9]+/.*)")
        self.assertEqual(second.template, (b"/", 1))
        self.assertIsNone(second.reverse)
        self.assertEqual(second.backend, Backend(
            url="ws://127.0.0.1:3838/$1", secure=False, host="127.0.0.1",
            port=3838, path=b"/$1", httpScheme=b"http", wsScheme=b"ws",
            hostHeader=b"127.0.0.1:3838"))

    def test_exampleHostRoute(self):
        """
        The third route takes one host only and goes to an https backend,
        which carries websockets over wss.
        """
        third = self.config.routes[2]
        self.assertEqual(third.index, 2)
        self.assertEqual(third.hosts, (b"shiny.example.com",))
        self.assertEqual(third.prefix, b"/")
        self.assertEqual(third.backend, Backend(
            url="https://10.0.0.5:8443/", secure=True, host="10.0.0.5",
            port=8443, path=b"/", httpScheme=b"https", wsScheme=b"wss",
            hostHeader=b"10.0.0.5:8443"))
        self.assertEqual(third.backend.key, (True, "10.0.0.5", 8443))
        self.assertEqual(
            third.backend.origin(b"wss"), b"wss://10.0.0.5:8443")


class ValueTests(SynchronousTestCase):
    """
    Defaults, conversions and the values of each kind of key.
    """

    def test_serverDefaults(self):
        """
        Every [server] key that is left out takes its documented default.
        """
        config = parseConfig(MINIMAL)
        self.assertEqual(config.server, ServerSettings(
            accessLog="-", workers=1, clientTimeout=75.0, shutdownTimeout=30.0,
            connectTimeout=60.0, responseTimeout=60.0, readTimeout=60.0,
            backendKeepalive=32, backendIdleTimeout=60.0,
            backendMaxConnections=0))

    def test_serverValues(self):
        """
        Every [server] key is read, whole seconds becoming floats.
        """
        config = parseConfig("""\
[server]
access_log = "-"
workers = 3
client_timeout = 5
shutdown_timeout = 1.5
connect_timeout = 2
response_timeout = 3
read_timeout = 4
backend_keepalive = 0
backend_idle_timeout = 6
backend_max_connections = 7
log_level = "warn"
""" + LISTEN)
        self.assertEqual(config.server, ServerSettings(
            accessLog="-", workers=3, clientTimeout=5.0, shutdownTimeout=1.5,
            connectTimeout=2.0, responseTimeout=3.0, readTimeout=4.0,
            backendKeepalive=0, backendIdleTimeout=6.0,
            backendMaxConnections=7, logLevel="warn"))
        self.assertIs(type(config.server.clientTimeout), float)

    def test_minimalConfig(self):
        """
        One listener and one route is a whole config.
        """
        config = parseConfig(MINIMAL)
        self.assertEqual(
            config.listeners, (Listener(address="127.0.0.1", port=8080),))
        [only] = config.routes
        self.assertIsInstance(only, Route)
        self.assertEqual(only.prefix, b"/")
        self.assertEqual(only.backend.host, "backend")
        self.assertEqual(only.backend.port, 80)
        self.assertEqual(only.backend.hostHeader, b"backend")

    def test_noRoutes(self):
        """
        A config without routes loads, with an empty route table.
        """
        self.assertEqual(parseConfig(LISTEN).routes, ())

    def test_routeTimeoutsDefaultToServer(self):
        """
        A route without timeouts takes those of [server]; its own override
        them one by one.
        """
        config = parseConfig(
            "[server]\nconnect_timeout = 5\nresponse_timeout = 6\n"
            "read_timeout = 7\n" + LISTEN + """
[[route]]
path = "/a/"
backend = "http://b/"

[[route]]
path = "/b/"
backend = "http://b/"
connect_timeout = 1
read_timeout = 0.5
""")
        first, second = config.routes
        self.assertEqual(
            (first.connectTimeout, first.responseTimeout, first.readTimeout),
            (5.0, 6.0, 7.0))
        self.assertEqual(
            (second.connectTimeout, second.responseTimeout,
             second.readTimeout),
            (1.0, 6.0, 0.5))

    def test_routeTimeoutsDefaultToServerDefaults(self):
        """
        Without [server] timeouts either, a route takes the server defaults.
        """
        [only] = parseConfig(MINIMAL).routes
        self.assertEqual(
            (only.connectTimeout, only.responseTimeout, only.readTimeout),
            (60.0, 60.0, 60.0))

    def test_backendSchemes(self):
        """
        Each backend scheme gives its TLS flag, default port, HTTP and
        websocket schemes and Host header.
        """
        cases = [
            ("http://b/", False, 80, b"http", b"ws", b"b"),
            ("https://b/", True, 443, b"https", b"wss", b"b"),
            ("ws://b/", False, 80, b"http", b"ws", b"b"),
            ("wss://b/", True, 443, b"https", b"wss", b"b"),
            ("http://b:443/", False, 443, b"http", b"ws", b"b:443"),
            ("wss://b:80/", True, 80, b"https", b"wss", b"b:80"),
            ("http://B.Example.COM:8080/", False, 8080, b"http", b"ws",
             b"b.example.com:8080"),
            ("http://[::1]:8080/", False, 8080, b"http", b"ws",
             b"[::1]:8080"),
            ("https://[::1]/", True, 443, b"https", b"wss", b"[::1]"),
        ]
        for url, secure, port, httpScheme, wsScheme, hostHeader in cases:
            [only] = parseConfig(route('path = "/"', "backend = %r" % url)).routes
            backend = only.backend
            self.assertEqual(
                (backend.secure, backend.port, backend.httpScheme,
                 backend.wsScheme, backend.hostHeader),
                (secure, port, httpScheme, wsScheme, hostHeader),
                "backend %r" % (url,))
            self.assertEqual(backend.url, url, "backend %r" % (url,))

    def test_backendIPv6Host(self):
        """
        An IPv6 backend's host is the address without brackets.
        """
        [only] = parseConfig(
            route('path = "/"', 'backend = "http://[::1]:8080/"')).routes
        self.assertEqual(only.backend.host, "::1")
        self.assertEqual(only.backend.key, (False, "::1", 8080))

    def test_backendWithoutPath(self):
        """
        A backend with no path on a prefix route has an empty path, whatever
        the route's path ends with.
        """
        for path in ["/app", "/app/", "/"]:
            [only] = parseConfig(
                route("path = %r" % path, 'backend = "http://b"')).routes
            self.assertEqual(only.backend.path, b"", "path %r" % (path,))

    def test_backendPathAndQuery(self):
        """
        The query of a regex route's backend is part of its template.
        """
        [only] = parseConfig(route(
            "match = '^/a/(.*)$'",
            'backend = "http://b/x/$1?k=$1"')).routes
        self.assertEqual(only.backend.path, b"/x/$1?k=$1")
        self.assertEqual(only.template, (b"/x/", 1, b"?k=", 1))

    def test_regexTwoGroups(self):
        """
        A backend may use every group of its expression, and $0.
        """
        [only] = parseConfig(route(
            "match = '^/(a)/(b)'", 'backend = "http://b/$2/$1/$0"')).routes
        self.assertEqual(only.match.groups, 2)
        self.assertEqual(only.template, (b"/", 2, b"/", 1, b"/", 0))

    def test_hosts(self):
        """
        host takes one name or a list, and is lower-cased.
        """
        cases = [
            ('host = "Shiny.Example.com"', (b"shiny.example.com",)),
            ('host = ["a.example", "*.B.example"]',
             (b"a.example", b"*.b.example")),
            ('host = "[::1]"', (b"[::1]",)),
            ('host = "localhost"', (b"localhost",)),
        ]
        for line, hosts in cases:
            [only] = parseConfig(
                route(line, 'path = "/"', 'backend = "http://b/"')).routes
            self.assertEqual(only.hosts, hosts, line)

    def test_preserveHost(self):
        """
        preserve_host is false unless set.
        """
        [only] = parseConfig(route(
            'path = "/"', 'backend = "http://b/"', "preserve_host = true"
        )).routes
        self.assertTrue(only.preserveHost)

    def test_listenAddresses(self):
        """
        IPv4 and IPv6 literals are accepted and written canonically.
        """
        cases = [
            ("0.0.0.0", "0.0.0.0"),
            ("::", "::"),
            ("::1", "::1"),
            ("0:0:0:0:0:0:0:1", "::1"),
            ("FE80::1", "fe80::1"),
        ]
        for written, canonical in cases:
            config = parseConfig(
                '[[listen]]\naddress = "%s"\nport = 80\n' % (written,))
            self.assertEqual(
                config.listeners[0].address, canonical, written)

    def test_portZeroMayRepeat(self):
        """
        Port 0 (any free port) may be listed twice on one address.
        """
        config = parseConfig(
            '[[listen]]\naddress = "127.0.0.1"\nport = 0\n'
            '[[listen]]\naddress = "127.0.0.1"\nport = 0\n')
        self.assertEqual(len(config.listeners), 2)

    def test_relativeAccessLogInParse(self):
        """
        A relative access_log is resolved against the config file's
        directory; "-" stays standard output.
        """
        config = parseConfig(
            '[server]\naccess_log = "logs/access.log"\n' + LISTEN,
            "/etc/proxyws/proxyws.toml")
        self.assertEqual(
            config.server.accessLog, "/etc/proxyws/logs/access.log")
        config = parseConfig(
            '[server]\naccess_log = "-"\n' + LISTEN,
            "/etc/proxyws/proxyws.toml")
        self.assertEqual(config.server.accessLog, "-")

    def test_demo(self):
        """
        An empty [demo] table takes its defaults.
        """
        config = parseConfig(LISTEN + "[demo]\n")
        self.assertEqual(
            (config.demo.address, config.demo.port), ("127.0.0.1", 8081))


class ErrorTextTests(SynchronousTestCase):
    """
    Every config error reads C{file: key.path: message}, exactly.
    """

    def assertConfigError(self, text, expected, filename="proxyws.toml"):
        """
        Parsing C{text} raises a L{ConfigError} whose text is C{expected}.
        """
        error = self.assertRaises(ConfigError, parseConfig, text, filename)
        self.assertEqual(str(error), expected)
        return error

    def test_errorAttributes(self):
        """
        The error keeps the file, the key path and the message apart.
        """
        error = self.assertConfigError(
            route('path = "/"', 'backend = "htp://x"'),
            "proxyws.toml: route[0].backend: 'htp://x' is not a URL with "
            "scheme http, https, ws or wss")
        self.assertEqual(error.filename, "proxyws.toml")
        self.assertEqual(error.keyPath, "route[0].backend")
        self.assertEqual(
            error.message,
            "'htp://x' is not a URL with scheme http, https, ws or wss")

    def test_fileNameInMessage(self):
        """
        The message names the file it was given.
        """
        self.assertConfigError(
            "lsten = 1\n",
            "/etc/p.toml: lsten: unknown key (did you mean 'listen'?); "
            "known keys here are admin, demo, host, listen, route, server, upstream",
            filename="/etc/p.toml")

    def test_unknownTopLevelKey(self):
        """
        An unknown top-level key is named, with a suggestion when one is
        close.
        """
        self.assertConfigError(
            "routes = 1\n" + LISTEN,
            "proxyws.toml: routes: unknown key (did you mean 'route'?); "
            "known keys here are admin, demo, host, listen, route, server, upstream")
        self.assertConfigError(
            "zzz = 1\n" + LISTEN,
            "proxyws.toml: zzz: unknown key; "
            "known keys here are admin, demo, host, listen, route, server, upstream")

    def test_unknownServerKey(self):
        """
        A misspelt [server] key gets a did-you-mean.
        """
        self.assertConfigError(
            '[server]\nacces_log = "-"\n' + LISTEN,
            "proxyws.toml: server.acces_log: unknown key (did you mean "
            "'access_log'?); known keys here are " + SERVER_KNOWN)

    def test_unknownRouteKey(self):
        """
        A misspelt route key names the route's index and gets a suggestion.
        """
        self.assertConfigError(
            LISTEN + '[[route]]\npath = "/"\nbackend = "http://b/"\n'
            '[[route]]\npath = "/"\nbakend = "http://b/"\n',
            "proxyws.toml: route[1].bakend: unknown key (did you mean "
            "'backend'?); known keys here are " + ROUTE_KNOWN)

    def test_unknownListenKey(self):
        """
        A misspelt listen key gets a suggestion.
        """
        self.assertConfigError(
            LISTEN + "tsl = {}\n",
            "proxyws.toml: listen[0].tsl: unknown key (did you mean "
            "'tls'?); known keys here are " + ", ".join(sorted(LISTEN_KEYS)))

    def test_wrongTypes(self):
        """
        A value of the wrong type or range says what was expected.
        """
        cases = [
            ('[[listen]]\naddress = "127.0.0.1"\nport = "80"\n',
             "listen[0].port: '80' is not a port number from 0 to 65535"),
            ('[[listen]]\naddress = "127.0.0.1"\nport = 65536\n',
             "listen[0].port: 65536 is not a port number from 0 to 65535"),
            ('[[listen]]\naddress = "127.0.0.1"\nport = true\n',
             "listen[0].port: True is not a port number from 0 to 65535"),
            (route('path = "/"', 'backend = "http://b/"',
                   'preserve_host = "yes"'),
             "route[0].preserve_host: 'yes' is not true or false"),
            ("[server]\nconnect_timeout = -1\n" + LISTEN,
             "server.connect_timeout: -1 is not a number of seconds "
             "from 0.1 to 1e9"),
            ("[server]\nread_timeout = 0\n" + LISTEN,
             "server.read_timeout: 0 is not a number of seconds "
             "from 0.1 to 1e9"),
            ("[server]\nclient_timeout = inf\n" + LISTEN,
             "server.client_timeout: inf is not a number of seconds "
             "from 1 to 1e9"),
            ("[server]\nclient_timeout = " + "9" * 40 + "\n" + LISTEN,
             "server.client_timeout: " + "9" * 40 + " is not a number of "
             "seconds from 1 to 1e9"),
            ('[server]\nclient_timeout = "5"\n' + LISTEN,
             "server.client_timeout: '5' is not a number of seconds"),
            ("[server]\nbackend_keepalive = -1\n" + LISTEN,
             "server.backend_keepalive: -1 is not a whole number, 0 or more"),
            ("[server]\naccess_log = 1\n" + LISTEN,
             "server.access_log: 1 is not a string"),
            ('[server]\nlog_level = "verbose"\n' + LISTEN,
             "server.log_level: 'verbose' is not one of 'debug', 'info', "
             "'warn', 'error', 'critical'"),
            ('[server]\nlog_level = "INFO"\n' + LISTEN,
             "server.log_level: 'INFO' is not one of 'debug', 'info', "
             "'warn', 'error', 'critical'"),
            (route('path = "/"', 'backend = "http://b/"',
                   "connect_timeout = -1"),
             "route[0].connect_timeout: -1 is not a number of seconds "
             "from 0.1 to 1e9"),
            (route('path = "/"', 'backend = "http://b/"', 'host = "a b"'),
             "route[0].host: 'a b' is not a host name such as "
             "'example.com' or '*.example.com', or a list of them"),
            (route("path = 1", 'backend = "http://b/"'),
             "route[0].path: 1 is not a string"),
        ]
        for text, expected in cases:
            self.assertConfigError(text, "proxyws.toml: " + expected)

    def test_invalidRegex(self):
        """
        A match that does not compile names the expression and the reason.
        """
        self.assertConfigError(
            route("match = '^/(a'", 'backend = "http://b/"'),
            "proxyws.toml: route[0].match: '^/(a' is not a valid regular "
            "expression: missing ), unterminated subpattern at position 2")

    def test_groupBeyondExpression(self):
        """
        $3 with an expression of two groups is refused.
        """
        self.assertConfigError(
            route("match = '^/(a)/(b)'", 'backend = "http://b/$3"'),
            "proxyws.toml: route[0].backend: 'http://b/$3' uses $3 but "
            "'match' has only 2 groups")
        self.assertConfigError(
            route("match = '^/(a)'", 'backend = "http://b/$2"'),
            "proxyws.toml: route[0].backend: 'http://b/$2' uses $2 but "
            "'match' has only 1 group")

    def test_groupOnPrefixRoute(self):
        """
        $1 on a prefix route is refused.
        """
        self.assertConfigError(
            route('path = "/app/"', 'backend = "http://b/$1/"'),
            "proxyws.toml: route[0].backend: 'http://b/$1/' uses $1 but "
            "only 'match' routes have groups")

    def test_groupInHost(self):
        """
        $N outside the path and query is refused.
        """
        self.assertConfigError(
            route("match = '^/(a)'", 'backend = "http://b$1/"'),
            "proxyws.toml: route[0].backend: 'http://b$1/': $N may appear "
            "only in the path and query")

    def test_badBackendURL(self):
        """
        A backend that is not an http, https, ws or wss URL with a host is
        refused.
        """
        suffix = " is not a URL with scheme http, https, ws or wss"
        for url in ["htp://x", "http:///x/", "http://", "/app/", "b:80/",
                    "ftp://b/", "http://b:99999/", "http://a..b/"]:
            self.assertConfigError(
                route('path = "/"', "backend = %r" % (url,)),
                "proxyws.toml: route[0].backend: %r%s" % (url, suffix))

    def test_backendWithCredentials(self):
        """
        A user, password or fragment in a backend is refused.
        """
        for url in ["http://u:p@b/", "http://b/#x"]:
            self.assertConfigError(
                route('path = "/"', "backend = %r" % (url,)),
                "proxyws.toml: route[0].backend: %r may not hold a user, "
                "password or #fragment" % (url,))

    def test_pathAndMatch(self):
        """
        A route with both path and match is refused.
        """
        self.assertConfigError(
            route('path = "/"', "match = '^/'", 'backend = "http://b/"'),
            "proxyws.toml: route[0]: needs exactly one of 'path' and 'match'")

    def test_neitherPathNorMatch(self):
        """
        A route with neither path nor match is refused.
        """
        self.assertConfigError(
            route('backend = "http://b/"'),
            "proxyws.toml: route[0]: needs exactly one of 'path' and 'match'")

    def test_missingBackend(self):
        """
        A route without a backend is refused.
        """
        self.assertConfigError(
            route('path = "/"'),
            "proxyws.toml: route[0].backend: is required and missing")

    def test_relativePath(self):
        """
        A route path must start with a slash.
        """
        self.assertConfigError(
            route('path = "app/"', 'backend = "http://b/"'),
            "proxyws.toml: route[0].path: 'app/' is not a path starting "
            "with '/'")

    def test_missingListen(self):
        """
        A config without [[listen]] is refused.
        """
        self.assertConfigError(
            '[[route]]\npath = "/"\nbackend = "http://b/"\n',
            "proxyws.toml: listen: at least one [[listen]] table is required")

    def test_listenNotTables(self):
        """
        listen written as a value rather than [[listen]] is refused.
        """
        self.assertConfigError(
            "listen = 8080\n",
            "proxyws.toml: listen: must be written as [[listen]] tables")

    def test_missingListenKeys(self):
        """
        A listener needs an address and a port.
        """
        self.assertConfigError(
            "[[listen]]\nport = 80\n",
            "proxyws.toml: listen[0].address: is required and missing")
        self.assertConfigError(
            '[[listen]]\naddress = "::"\n',
            "proxyws.toml: listen[0].port: is required and missing")

    def test_duplicateListen(self):
        """
        The same address and port twice is refused, naming the first.
        """
        self.assertConfigError(
            LISTEN + '[[listen]]\naddress = "::1"\nport = 8080\n' + LISTEN,
            "proxyws.toml: listen[2]: 127.0.0.1 port 8080 is already used "
            "by listen[0]")
        self.assertConfigError(
            '[[listen]]\naddress = "::1"\nport = 80\n'
            '[[listen]]\naddress = "0::1"\nport = 80\n',
            "proxyws.toml: listen[1]: ::1 port 80 is already used "
            "by listen[0]")

    def test_invalidAddress(self):
        """
        A listen address must be an IP literal.
        """
        cases = [
            ('"localhost"', "'localhost'"),
            ('"256.0.0.1"', "'256.0.0.1'"),
            ('"[::1]"', "'[::1]'"),
            ("1", "1"),
        ]
        for written, shown in cases:
            self.assertConfigError(
                "[[listen]]\naddress = %s\nport = 80\n" % (written,),
                "proxyws.toml: listen[0].address: %s is not an IPv4 or IPv6 "
                "address such as '127.0.0.1' or '::'" % (shown,))

    def test_tlsErrors(self):
        """
        tls must be a table with both cert and key.
        """
        self.assertConfigError(
            LISTEN + 'tls = "x"\n',
            "proxyws.toml: listen[0].tls: 'x' is not a table")
        self.assertConfigError(
            LISTEN + 'tls = { cert = "c" }\n',
            "proxyws.toml: listen[0].tls.key: is required and missing")
        self.assertConfigError(
            LISTEN + 'tls = { cert = "c", key = "k", ca = "x" }\n',
            "proxyws.toml: listen[0].tls.ca: unknown key; known keys "
            "here are cert, ciphers, client_ca, "
            "client_cert, client_subject_header, key, key_passphrase_env, "
            "key_passphrase_file, min_version")

    def test_reviewedInputs(self):
        """
        Values that used to pass or crash get one line each.
        """
        cases = [
            (LISTEN + '[[route]]\nmatch = "a{99999999999}"\nbackend = "http://b/"\n',
             "proxyws.toml: route[0].match: 'a{99999999999}' is not a valid regular "
             "expression: the repetition number is too large"),
            (LISTEN + '[[route]]\npath = "/"\nbackend = "http://b/"\n'
             'auth = { htpasswd = "x", realm = "a\\r\\nb" }\n',
             "proxyws.toml: route[0].auth.realm: 'a\\r\\nb' is not printable ASCII "
             "text, as a header value holds"),
            ("[server]\ntrusted_proxies = [1]\n" + LISTEN,
             "proxyws.toml: server.trusted_proxies: [1] is not a list of addresses "
             "or CIDRs such as '10.0.0.0/8'"),
            (LISTEN + '[[route]]\npath = "/"\nbackend = "http://b:0/"\n',
             "proxyws.toml: route[0].backend: 'http://b:0/' is not a URL with scheme "
             "http, https, ws or wss"),
            (LISTEN + '[[route]]\npath = "/"\nbackend = "http://b/a b/"\n',
             "proxyws.toml: route[0].backend: 'http://b/a b/' holds a space or a "
             "control character; percent-encode it"),
            (LISTEN + '[[route]]\npath = "/"\nbackend = "http://a%41b/"\n',
             "proxyws.toml: route[0].backend: 'http://a%41b/': 'a%41b' is not a host "
             "name or IP address"),
            (LISTEN + '[[route]]\npath = "/"\nbackend = "http://b/"\nrequire_ip = []\n',
             "proxyws.toml: route[0].require_ip: is empty: it would refuse every client"),
        ]
        for text, expected in cases:
            self.assertConfigError(text, expected)

    def test_trailingSlashMismatch(self):
        """
        A path and a backend path must both end in a slash or both not.
        """
        self.assertConfigError(
            route('path = "/app/"', 'backend = "http://b/base"'),
            "proxyws.toml: route[0]: path '/app/' and the path of backend "
            "'http://b/base' must both end with '/' or both not "
            "(Apache ProxyPass rule)")
        self.assertConfigError(
            route('path = "/app"', 'backend = "http://b/"'),
            "proxyws.toml: route[0]: path '/app' and the path of backend "
            "'http://b/' must both end with '/' or both not "
            "(Apache ProxyPass rule)")

    def test_invalidTOML(self):
        """
        Text that is not TOML is refused with the parser's reason.
        """
        self.assertConfigError(
            "[[listen]\n",
            "proxyws.toml: not valid TOML: Expected ']]' at the end of an "
            "array declaration (at line 1, column 9)")
        self.assertConfigError(
            "x = \n",
            "proxyws.toml: not valid TOML: Invalid value (at line 1, "
            "column 5)")

    def test_serverNotATable(self):
        """
        server written as a value is refused.
        """
        self.assertConfigError(
            "server = 1\n" + LISTEN,
            "proxyws.toml: server: 1 is not a table")


class LoadConfigTests(SynchronousTestCase):
    """
    L{loadConfig} reads the file and checks the files it names.
    """

    def setUp(self):
        self.directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.directory)
        self.path = os.path.join(self.directory, "proxyws.toml")

    def write(self, text):
        """
        Write the config file.
        """
        with open(self.path, "w") as f:
            f.write(text)

    def test_loads(self):
        """
        A valid file loads into the same config as its parsed text.
        """
        self.write(MINIMAL)
        self.assertEqual(loadConfig(self.path), parseConfig(MINIMAL, self.path))

    def test_missingFile(self):
        """
        A file that does not exist is named in the error.
        """
        missing = os.path.join(self.directory, "missing.toml")
        error = self.assertRaises(ConfigError, loadConfig, missing)
        self.assertEqual(
            str(error),
            "%s: cannot read the file: No such file or directory" % (missing,))

    def test_notUTF8(self):
        """
        A file that is not UTF-8 is refused.
        """
        with open(self.path, "wb") as f:
            f.write(b"\xff\n")
        error = self.assertRaises(ConfigError, loadConfig, self.path)
        self.assertTrue(
            str(error).startswith(self.path + ": cannot read the file: "),
            str(error))

    def test_parseErrorNamesFile(self):
        """
        Errors in the text name the file's path.
        """
        self.write("[[listen]]\nport = 80\n")
        error = self.assertRaises(ConfigError, loadConfig, self.path)
        self.assertEqual(
            str(error),
            "%s: listen[0].address: is required and missing" % (self.path,))

    def test_accessLogDirectoryMissing(self):
        """
        An access_log in a directory that does not exist is refused.
        """
        self.write(
            '[server]\naccess_log = "/nonexistent/dir/access.log"\n' + LISTEN)
        error = self.assertRaises(ConfigError, loadConfig, self.path)
        self.assertEqual(
            str(error),
            "%s: server.access_log: cannot open "
            "'/nonexistent/dir/access.log' for appending: "
            "No such file or directory" % (self.path,))

    def test_relativeAccessLog(self):
        """
        A relative access_log is resolved against the config file's
        directory, not the working directory, and created there.
        """
        os.mkdir(os.path.join(self.directory, "logs"))
        self.write('[server]\naccess_log = "logs/access.log"\n' + LISTEN)
        config = loadConfig(self.path)
        expected = os.path.join(self.directory, "logs", "access.log")
        self.assertEqual(config.server.accessLog, expected)
        self.assertTrue(os.path.isfile(expected))

    def test_standardOutputAccessLog(self):
        """
        access_log "-" opens no file.
        """
        self.write(LISTEN)
        self.assertEqual(loadConfig(self.path).server.accessLog, "-")
        self.assertEqual(os.listdir(self.directory), ["proxyws.toml"])

    def test_tlsCertificateMissing(self):
        """
        A TLS certificate that does not exist is named with its key path.
        """
        self.write(LISTEN + 'tls = { cert = "server.crt", key = "server.key" }\n')
        error = self.assertRaises(ConfigError, loadConfig, self.path)
        self.assertEqual(
            str(error),
            "%s: listen[0].tls.cert: cannot read %r: no such file"
            % (self.path, os.path.join(self.directory, "server.crt")))

    def test_tlsKeyMissing(self):
        """
        With the certificate present, a missing key is named.
        """
        with open(os.path.join(self.directory, "server.crt"), "w"):
            pass
        self.write(
            LISTEN + '[[listen]]\naddress = "::"\nport = 8443\n'
            'tls = { cert = "server.crt", key = "server.key" }\n')
        error = self.assertRaises(ConfigError, loadConfig, self.path)
        self.assertEqual(
            str(error),
            "%s: listen[1].tls.key: cannot read %r: no such file"
            % (self.path, os.path.join(self.directory, "server.key")))

    def test_tlsFilesPresent(self):
        """
        Readable TLS files, named relative to the config, load.
        """
        for name in ("server.crt", "server.key"):
            with open(os.path.join(self.directory, name), "w"):
                pass
        self.write(LISTEN + 'tls = { cert = "server.crt", key = "server.key" }\n')
        tls = loadConfig(self.path).listeners[0].tls
        self.assertEqual(tls, TLSSettings(
            cert=os.path.join(self.directory, "server.crt"),
            key=os.path.join(self.directory, "server.key")))


class BoundsTests(SynchronousTestCase):
    """
    Values without sane bounds are refused, and no value, however large or
    deep, makes more than one line of message.
    """

    def assertConfigError(self, text, expected):
        """
        Parsing C{text} raises a L{ConfigError} whose text is C{expected}
        and which is its only problem.
        """
        error = self.assertRaises(ConfigError, parseConfig, text)
        self.assertEqual(str(error), expected)
        self.assertEqual([str(p) for p in error.problems], [expected])

    # Every seconds-valued key: (table, key, its least value, whether 0
    # turns it off).  schema.py says why each floor is what it is.
    SECONDS = [
        ("server", "client_timeout", 1, False),
        ("server", "shutdown_timeout", 1, False),
        ("server", "connect_timeout", 0.1, False),
        ("server", "response_timeout", 0.1, False),
        ("server", "read_timeout", 0.1, False),
        ("server", "backend_idle_timeout", 1, False),
        ("server", "reload_grace", 0.1, False),
        ("server", "max_websocket_lifetime", 1, True),
        ("server", "head_timeout", 0.1, False),
        ("server", "body_timeout", 0.1, False),
        ("server", "plugin_timeout", 0.1, False),
        ("route", "connect_timeout", 0.1, False),
        ("route", "response_timeout", 0.1, False),
        ("route", "read_timeout", 0.1, False),
        ("route", "ws_ping_interval", 1, True),
        ("route", "ws_ping_timeout", 0.1, False),
        ("route", "ws_idle_timeout", 0.1, True),
    ]

    def secondsConfig(self, table, key, value):
        """
        A config setting C{table.key = value}.
        """
        line = "{} = {}".format(key, value)
        if table == "server":
            return "[server]\n" + line + "\n" + MINIMAL
        return route('path = "/"', 'backend = "http://b/"', line)

    def test_everySecondsKeyListed(self):
        """
        The table above lists every key whose value is a number of seconds.
        """
        listed = {(table, key) for table, key, _, _ in self.SECONDS}
        for table, keys in [("server", SERVER_KEYS), ("route", ROUTE_KEYS)]:
            for key, (parse, _) in keys.items():
                if parse is not None and parse.__name__ in ("seconds", "secondsOrOff"):
                    self.assertIn((table, key), listed)

    def test_secondsMinimum(self):
        """
        Each seconds key takes its least value and 1e9, and refuses less
        and more, naming the range (and 0 for the keys it turns off).
        """
        for table, key, least, off in self.SECONDS:
            for good in [least, 1e9] + ([0] if off else []):
                parseConfig(self.secondsConfig(table, key, good))
            expected = "{}a number of seconds from {} to 1e9".format(
                "0 (off) or " if off else "", least)
            where = "server" if table == "server" else "route[0]"
            for bad in [least / 2, "1e-300", "1e10"]:
                self.assertConfigError(
                    self.secondsConfig(table, key, bad),
                    "proxyws.toml: {}.{}: {} is not {}".format(
                        where, key, float(bad), expected))

    def test_tinyPingInterval(self):
        """
        C{ws_ping_interval = 1e-300}, which had one websocket sent 10,000
        pings a second, is refused.
        """
        self.assertConfigError(
            route('path = "/"', 'backend = "http://b/"', "ws_ping_interval = 1e-300"),
            "proxyws.toml: route[0].ws_ping_interval: 1e-300 is not 0 (off) or a "
            "number of seconds from 1 to 1e9")

    def test_deeplyNestedTOML(self):
        """
        TOML nested past what the parser can follow is one line, not a
        RecursionError.
        """
        for text in ["a = " + "[" * 100000 + "]" * 100000,
                     "a = " + "[" * 600 + "]" * 600,
                     "a = " + "{b = " * 600 + "1" + "}" * 600]:
            self.assertConfigError(
                text, "proxyws.toml: not valid TOML: arrays or tables nested too deeply")

    def test_hugeInteger(self):
        """
        An integer too long for Python to convert is one line.
        """
        self.assertConfigError(
            "a = " + "9" * 5000 + "\n" + MINIMAL,
            "proxyws.toml: not valid TOML: Exceeds the limit (4300 digits) for "
            "integer string conversion")

    def test_hugeValueShortened(self):
        """
        A 10 MB value is shown as its first hundred characters, an ellipsis
        and its length.
        """
        self.assertConfigError(
            '[server]\nlog_level = "' + "a" * 10485760 + '"\n' + LISTEN,
            "proxyws.toml: server.log_level: '" + "a" * 100 + "…' (10485760 "
            "characters) is not one of 'debug', 'info', 'warn', 'error', 'critical'")

    def test_hugeValuesEverywhere(self):
        """
        Every message that echoes a value shortens it: a backend URL, a
        path, an expression, a host name, a key name.
        """
        long = "x" * 5000
        cases = [
            route('path = "/"', 'backend = "htp://%s"' % long),
            route('path = "%s"' % long, 'backend = "http://b/"'),
            route("match = '(%s'" % long, 'backend = "http://b/"'),
            route('path = "/"', 'backend = "http://b/"', 'allow = ["%s"]' % long),
            route('path = "/"', 'backend = "http://b/"', 'auth = 5%s' % ("0" * 4000)),
            '"%s" = 1\n' % long + MINIMAL,
            LISTEN + '[[host]]\nnames = ["%s.a"]\n[[host]]\nnames = ["%s.a"]\n' % (long, long),
        ]
        for text in cases:
            error = self.assertRaises(ConfigError, parseConfig, text)
            for problem in error.problems:
                self.assertLess(len(str(problem)), 700, str(problem)[:200])
                self.assertIn("…", str(problem))

    def test_keyNamesInOneLine(self):
        """
        A key that needs quotes is shown quoted, so that a newline in it
        stays in one line.
        """
        self.assertConfigError(
            '"a\\nb" = 1\n' + MINIMAL,
            "proxyws.toml: 'a\\nb': unknown key; known keys here are admin, demo, host, "
            "listen, route, server, upstream")

    def test_catastrophicBacktracking(self):
        """
        A C{match} that can backtrack catastrophically is refused, naming
        the expression, the construct and the fix; the possessive form is
        accepted.
        """
        self.assertConfigError(
            route("match = '^/re/(a+)+$'", 'backend = "http://b/$1"'),
            "proxyws.toml: route[0].match: '^/re/(a+)+$' can take time exponential "
            "in the path's length: '(a+)+' can match the same text in more than one "
            "way; make the inner repeat possessive (a++ rather than a+) or put it "
            "in an atomic group (?>...)")
        [only] = parseConfig(
            route("match = '^/re/(a++)+$'", 'backend = "http://b/$1"')).routes
        self.assertEqual(only.match.pattern, b"^/re/(a++)+$")

    def test_uncheckableExpression(self):
        """
        An expression too large to check is refused, saying why.
        """
        self.assertConfigError(
            route("match = '%s'" % ("x" * 20001,), 'backend = "http://b/"'),
            "proxyws.toml: route[0].match: '" + "x" * 100 + "…' (20001 characters) "
            "cannot be checked for catastrophic backtracking: it has more than "
            "20000 character matchers")


class HostFilesTests(SynchronousTestCase):
    """
    A C{[[host]]}'s certificate and key must be readable at load, whether
    or not a listener uses TLS.
    """

    def test_hostCertificateMissing(self):
        """
        A host certificate that does not exist is refused at load, with no
        TLS listener, like every other missing file; so is its key.
        """
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "proxyws.toml")
        with open(path, "w") as f:
            f.write(MINIMAL + '[[host]]\nnames = "a.example"\n'
                    'tls = { cert = "/x/y.crt", key = "/x/y.key" }\n')
        error = self.assertRaises(ConfigError, loadConfig, path)
        self.assertEqual(
            [str(p) for p in error.problems],
            [path + ": host[0].tls.cert: cannot read '/x/y.crt': no such file",
             path + ": host[0].tls.key: cannot read '/x/y.key': no such file"])
        self.assertEqual(str(error), str(error.problems[0]))
