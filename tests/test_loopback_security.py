"""
End-to-end tests of the proxy's security features over real loopback
sockets (127.0.0.1 and ::1): redirects to https and HSTS, virtual hosts,
address rules, HTTP Basic authentication, trusted proxies and the PROXY
protocol.  proxyws runs in this process (L{tests.helpers.startProxy}) in
front of real twisted.web and Autobahn backends.
"""

import base64
import json
import re
import shutil
import socket
import struct
import tempfile

import attr
import bcrypt
from passlib.hash import sha512_crypt
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource

from .helpers import rawRequest, startBackend, startProxy
from .wsbackends import (
    CLOSE,
    TEXT,
    EchoBackend,
    closePayload,
    connectRaw,
    encodeFrame,
    upgradeRequest,
    waitUntil,
)

# The users of the test htpasswd file: name -> (password, how it is hashed).
# Low costs keep the tests fast; the gate does not care about the cost.
USERS = {
    b"alice": (b"wonderland", lambda pw: bcrypt.hashpw(pw, bcrypt.gensalt(rounds=4))),
    b"bob": (b"builder", lambda pw: sha512_crypt.using(rounds=5000).hash(pw).encode("ascii")),
}

REALM = "Test Realm"

# The 12-byte signature that starts a PROXY protocol v2 header.
PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


@attr.s(frozen=True)
class Response:
    """
    A raw HTTP response, taken apart.

    @ivar status: the status code.
    @ivar headers: lower-cased name -> list of values.
    @ivar body: the bytes after the head.
    @ivar raw: everything received.
    """

    status = attr.ib()
    headers = attr.ib()
    body = attr.ib()
    raw = attr.ib()

    def header(self, name):
        """
        @return: the values of header C{name} (any case), or L{None}.
        """
        return self.headers.get(name.lower())


def parseResponse(raw):
    """
    Take a raw HTTP/1.1 response apart.

    @raise AssertionError: when C{raw} holds no status line.
    """
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    match = re.match(rb"HTTP/1\.[01] (\d{3})", lines[0])
    if match is None:
        raise AssertionError("not an HTTP response: %r" % (raw,))
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return Response(int(match.group(1)), headers, body, raw)


def requestBytes(path, host=b"x", headers=(), method=b"GET"):
    """
    A request that asks for the connection to close after the answer.

    @param host: the C{Host} header, or L{None} for an HTTP/1.0 request
        without one.
    @param headers: more C{(name, value)} pairs.
    """
    if host is None:
        lines = [method + b" " + path + b" HTTP/1.0"]
    else:
        lines = [method + b" " + path + b" HTTP/1.1", b"Host: " + host, b"Connection: close"]
    lines.extend(name + b": " + value for name, value in headers)
    return b"\r\n".join(lines) + b"\r\n\r\n"


@inlineCallbacks
def get(port, path, host=b"x", headers=(), address="127.0.0.1", prefix=b""):
    """
    Send one request over a fresh connection and read the whole answer.

    @param address: the proxy's address to connect to.
    @param prefix: bytes sent ahead of the request (a PROXY header).
    @return: a L{Response}.
    """
    raw = yield rawRequest(port, prefix + requestBytes(path, host, headers), host=address)
    return parseResponse(raw)


def basic(user, password):
    """
    @return: an C{Authorization} header value for Basic credentials.
    """
    return b"Basic " + base64.b64encode(user + b":" + password)


def upgradeThenClose(path, headers=()):
    """
    A websocket upgrade request that asks for the connection to close after
    a refusal, so that L{rawRequest} ends.
    """
    return upgradeRequest(path, b"127.0.0.1", headers).replace(
        b"Connection: Upgrade\r\n", b"Connection: Upgrade, close\r\n"
    )


def proxyV2Header(source, destination, sourcePort, destinationPort):
    """
    A PROXY protocol v2 header for a TCP over IPv4 connection, built as the
    HAProxy specification (section 2.2) lays it out: the signature, version
    2 and command PROXY (0x21), family AF_INET and protocol STREAM (0x11),
    the length of the address block, then the addresses and ports.
    """
    addresses = (
        socket.inet_aton(source)
        + socket.inet_aton(destination)
        + struct.pack("!HH", sourcePort, destinationPort)
    )
    return PROXY_V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", len(addresses)) + addresses


def route(path, backendPort, extra=""):
    """
    The text of a C{[[route]]} to a backend on 127.0.0.1.
    """
    return '[[route]]\npath = "%s"\nbackend = "http://127.0.0.1:%d%s"\n%s\n' % (
        path,
        backendPort,
        path,
        extra,
    )


def listen(address="127.0.0.1", extra=""):
    """
    The text of a C{[[listen]]} on port 0.
    """
    return '[[listen]]\naddress = "%s"\nport = 0\n%s\n' % (address, extra)


def portOf(service, index):
    """
    @return: the port number of the C{index}th listener of C{service}.
    """
    return service.ports[index].getHost().port


class Recorder(Resource):
    """
    A backend answering every request with its name and the target it got,
    and recording the requests.

    @ivar requests: C{(uri, X-Forwarded-For values)} of each request.
    """

    isLeaf = True

    def __init__(self, name):
        Resource.__init__(self)
        self.name = name
        self.requests = []

    def render(self, request):
        """
        Record, then answer C{<name> <uri>}.
        """
        self.requests.append((request.uri, request.requestHeaders.getRawHeaders(b"X-Forwarded-For")))
        request.setHeader(b"Content-Type", b"text/plain")
        return self.name + b" " + request.uri


class BackendTestCase(TestCase):
    """
    Starts named L{Recorder} backends on demand.
    """

    timeout = 10

    def backend(self, name=b"backend"):
        """
        Start a L{Recorder} backend.

        @return: C{(recorder, counting site, port)}.
        """
        recorder = Recorder(name)
        site, port = startBackend(self, recorder)
        return recorder, site, port

    def assertLogLine(self, log, pattern):
        """
        The last access-log line matches the regular expression C{pattern}.
        """
        self.assertTrue(log.lines, "no access-log line")
        self.assertIsNotNone(re.match(pattern, log.lines[-1]), log.lines[-1])


class RedirectTests(BackendTestCase):
    """
    C{redirect_https} on a listener or a route, and C{hsts} on plain HTTP.
    """

    @inlineCallbacks
    def test_listenerRedirect(self):
        """
        C{redirect_https = true}: 301 to the same host (without the port),
        path and query over https; a log line; the backend never contacted.
        """
        recorder, site, backendPort = self.backend()
        service, port, log = startProxy(
            self, listen(extra="redirect_https = true") + route("/", backendPort)
        )
        response = yield get(port, b"/a/b?x=1", host=b"example.com:8080")
        self.assertEqual(response.status, 301)
        self.assertEqual(response.header(b"Location"), [b"https://example.com/a/b?x=1"])
        self.assertEqual(len(log.lines), 1)
        self.assertLogLine(log, rb'127\.0\.0\.1 - - \[[^]]+\] "GET /a/b\?x=1 HTTP/1\.1" 301 \d+ ')
        self.assertEqual(site.connections, 0)

    @inlineCallbacks
    def test_listenerRedirectPortAndStatus(self):
        """
        C{redirect_https = { port = 8443, status = 308 }}: 308 to the https
        port given.
        """
        recorder, site, backendPort = self.backend()
        service, port, log = startProxy(
            self,
            listen(extra="redirect_https = { port = 8443, status = 308 }")
            + route("/", backendPort),
        )
        response = yield get(port, b"/a/b?x=1", host=b"example.com:8080")
        self.assertEqual(response.status, 308)
        self.assertEqual(response.header(b"Location"), [b"https://example.com:8443/a/b?x=1"])
        self.assertIn(b'"GET /a/b?x=1 HTTP/1.1" 308 ', log.lines[0])
        self.assertEqual(site.connections, 0)

    @inlineCallbacks
    def test_listenerRedirectWithoutHostIPv4(self):
        """
        An HTTP/1.0 request without C{Host} is sent to the address it came
        in on.
        """
        recorder, site, backendPort = self.backend()
        service, port, log = startProxy(
            self, listen(extra="redirect_https = true") + route("/", backendPort)
        )
        response = yield get(port, b"/a?x=1", host=None)
        self.assertEqual(response.status, 301)
        self.assertEqual(response.header(b"Location"), [b"https://127.0.0.1/a?x=1"])

    @inlineCallbacks
    def test_listenerRedirectWithoutHostIPv6(self):
        """
        An HTTP/1.0 request without C{Host} on an IPv6 listener is sent to
        the address it came in on, in brackets as URLs write it (RFC 3986
        3.2.2): C{https://[::1]/a}, not C{https://::1/a}.
        """
        recorder, site, backendPort = self.backend()
        service, port, log = startProxy(
            self, listen("::1", extra="redirect_https = true") + route("/", backendPort)
        )
        response = yield get(port, b"/a?x=1", host=None, address="::1")
        self.assertEqual(response.status, 301)
        self.assertEqual(response.header(b"Location"), [b"https://[::1]/a?x=1"])

    @inlineCallbacks
    def test_routeRedirect(self):
        """
        A route's C{redirect_https} redirects that route only; the others
        on the same plain listener are proxied.
        """
        recorder, site, backendPort = self.backend()
        service, port, log = startProxy(
            self,
            listen()
            + route("/secure/", backendPort, "redirect_https = true")
            + route("/", backendPort),
        )
        response = yield get(port, b"/secure/page?q=2", host=b"app.example:8080")
        self.assertEqual(response.status, 301)
        self.assertEqual(
            response.header(b"Location"), [b"https://app.example/secure/page?q=2"]
        )
        self.assertEqual(recorder.requests, [])
        response = yield get(port, b"/plain?q=3", host=b"app.example:8080")
        self.assertEqual((response.status, response.body), (200, b"backend /plain?q=3"))
        self.assertEqual([uri for uri, _ in recorder.requests], [b"/plain?q=3"])

    @inlineCallbacks
    def test_noHSTSOverPlainHTTP(self):
        """
        C{hsts} on a plain listener sends no C{Strict-Transport-Security}
        (RFC 6797 7.2: only over secure transport), neither on a proxied
        answer nor on a redirect.
        """
        recorder, site, backendPort = self.backend()
        service, port, log = startProxy(
            self,
            listen(extra='hsts = "max-age=31536000"')
            + route("/secure/", backendPort, "redirect_https = true")
            + route("/", backendPort),
        )
        proxied = yield get(port, b"/page")
        redirected = yield get(port, b"/secure/page")
        self.assertEqual((proxied.status, redirected.status), (200, 301))
        self.assertIsNone(proxied.header(b"Strict-Transport-Security"))
        self.assertIsNone(redirected.header(b"Strict-Transport-Security"))


class VirtualHostTests(BackendTestCase):
    """
    C{[[host]]} tables: exact names, wildcards, the default host, the
    routes outside any host, and C{unknown_host}.
    """

    def setUp(self):
        """
        Start backends A, B, C (hosts) and G (global routes).
        """
        self.ports = {}
        self.recorders = {}
        for name in (b"A", b"B", b"C", b"G"):
            recorder, site, port = self.backend(name)
            self.recorders[name], self.ports[name] = recorder, port

    def hostConfig(self, default=True, extra="", globalPath="/"):
        """
        Hosts a.example (A), *.b.example (B) and, when C{default}, a default
        host c.example (C), each with a C{/app/} route; then a global route
        C{globalPath} to G.
        """
        text = extra + listen()
        for name, names, isDefault in [
            (b"A", '["a.example"]', False),
            (b"B", '["*.b.example"]', False),
            (b"C", '["c.example"]', True),
        ]:
            if isDefault and not default:
                continue
            text += "[[host]]\nnames = %s\n%s\n" % (names, "default = true" if isDefault else "")
            text += "[[host.route]]\n" + route("/app/", self.ports[name])[len("[[route]]\n") :]
        return text + route(globalPath, self.ports[b"G"])

    @inlineCallbacks
    def test_hostsAndDefault(self):
        """
        Each name reaches its host's backend; a wildcard covers names below
        it but not the name itself, which like an unknown name goes to the
        default host.
        """
        service, port, log = startProxy(self, self.hostConfig())
        cases = [
            (b"a.example", b"A"),
            (b"A.Example:8080", b"A"),
            (b"x.b.example", b"B"),
            (b"y.x.b.example", b"B"),
            (b"b.example", b"C"),
            (b"c.example", b"C"),
            (b"unknown.example", b"C"),
            (b"127.0.0.1:%d" % port, b"C"),
        ]
        seen = []
        for host, expected in cases:
            response = yield get(port, b"/app/x", host=host)
            seen.append((host, response.status, response.body))
        self.assertEqual(
            seen, [(host, 200, name + b" /app/x") for host, name in cases]
        )

    @inlineCallbacks
    def test_globalRouteAfterHostRoutes(self):
        """
        A path that a host's routes do not cover falls to the routes outside
        any host, for every host, the default one included.
        """
        service, port, log = startProxy(self, self.hostConfig())
        seen = []
        for host in (b"a.example", b"x.b.example", b"unknown.example"):
            response = yield get(port, b"/other?y=2", host=host)
            seen.append((response.status, response.body))
        self.assertEqual(seen, [(200, b"G /other?y=2")] * 3)

    @inlineCallbacks
    def test_unknownHost421(self):
        """
        Without a default host and with C{unknown_host = 421}, a request for
        an unknown name that no global route takes gets 421 and a log line;
        one a global route takes is proxied.
        """
        service, port, log = startProxy(
            self,
            self.hostConfig(default=False, extra="[server]\nunknown_host = 421\n", globalPath="/shared/"),
        )
        response = yield get(port, b"/app/x", host=b"unknown.example")
        self.assertEqual(response.status, 421)
        self.assertIn(b'"GET /app/x HTTP/1.1" 421 ', log.lines[-1])
        response = yield get(port, b"/app/x", host=b"b.example")
        self.assertEqual(response.status, 421)
        response = yield get(port, b"/shared/y", host=b"unknown.example")
        self.assertEqual((response.status, response.body), (200, b"G /shared/y"))
        response = yield get(port, b"/app/x", host=b"a.example")
        self.assertEqual((response.status, response.body), (200, b"A /app/x"))
        self.assertEqual(self.recorders[b"C"].requests, [])

    @inlineCallbacks
    def test_unknownHost404(self):
        """
        C{unknown_host = 404}, and the default, answer an unknown name with
        404.
        """
        for extra in ("[server]\nunknown_host = 404\n", ""):
            service, port, log = startProxy(
                self, self.hostConfig(default=False, extra=extra, globalPath="/shared/")
            )
            response = yield get(port, b"/app/x", host=b"unknown.example")
            self.assertEqual(response.status, 404, extra)
            self.assertIn(b'"GET /app/x HTTP/1.1" 404 ', log.lines[-1])

    @inlineCallbacks
    def test_knownHostUncoveredPath(self):
        """
        With C{unknown_host = 421}, a known host's request that no route
        takes is a plain 404, not 421.
        """
        service, port, log = startProxy(
            self,
            self.hostConfig(default=False, extra="[server]\nunknown_host = 421\n", globalPath="/shared/"),
        )
        response = yield get(port, b"/nowhere", host=b"a.example")
        self.assertEqual(response.status, 404)


class AccessRuleTests(BackendTestCase):
    """
    Address rules over IPv4 and IPv6 loopback: Apache's C{Order},
    C{Allow}, C{Deny}, C{Require ip}, host-level rules.
    """

    def setUp(self):
        """
        Start a backend and a proxy on 127.0.0.1 and ::1 with a route per
        kind of rule.
        """
        self.recorder, self.site, backendPort = self.backend()
        config = (
            listen("127.0.0.1")
            + listen("::1")
            + route(
                "/deny-allow/",
                backendPort,
                'order = "deny,allow"\ndeny = ["all"]\nallow = ["127.0.0.0/8"]',
            )
            + route(
                "/allow-deny/",
                backendPort,
                'order = "allow,deny"\nallow = ["all"]\ndeny = ["127.0.0.1"]',
            )
            + route("/require/", backendPort, 'require_ip = ["::1"]')
            + route("/default-order/", backendPort, 'deny = ["::1"]')
            + route("/", backendPort)
            + '[[host]]\nnames = ["locked.example"]\norder = "deny,allow"\ndeny = ["all"]\n'
            + "[[host.route]]\n"
            + route("/inherits/", backendPort)[len("[[route]]\n") :]
            + "[[host.route]]\n"
            + route("/own/", backendPort, 'require_ip = ["127.0.0.1"]')[len("[[route]]\n") :]
        )
        self.service, self.port4, self.log = startProxy(self, config)
        self.port6 = portOf(self.service, 1)

    def fetch(self, path, address, host=b"x", headers=()):
        """
        GET C{path} from C{address} (C{"127.0.0.1"} or C{"::1"}).
        """
        port = self.port4 if address == "127.0.0.1" else self.port6
        return get(port, path, host=host, headers=headers, address=address)

    @inlineCallbacks
    def statuses(self, cases):
        """
        @param cases: C{(path, address)} pairs, or C{(path, address, host)}.
        @return: C{(case, status)} pairs.
        """
        seen = []
        for case in cases:
            response = yield self.fetch(*case)
            seen.append((case, response.status))
        return seen

    @inlineCallbacks
    def test_rulesByAddress(self):
        """
        Each kind of rule admits and refuses the loopback addresses as
        Apache would.
        """
        expected = [
            (("/deny-allow/x", "127.0.0.1"), 200),
            (("/deny-allow/x", "::1"), 403),
            (("/allow-deny/x", "127.0.0.1"), 403),
            (("/allow-deny/x", "::1"), 200),
            (("/require/x", "::1"), 200),
            (("/require/x", "127.0.0.1"), 403),
            (("/default-order/x", "127.0.0.1"), 200),
            (("/default-order/x", "::1"), 403),
            (("/open/x", "::1"), 200),
        ]
        seen = yield self.statuses([(path.encode(), address) for (path, address), _ in expected])
        self.assertEqual(
            seen, [((path.encode(), address), status) for (path, address), status in expected]
        )
        admitted = sorted(uri for uri, _ in self.recorder.requests)
        self.assertEqual(
            admitted,
            sorted(path.encode() for (path, _), status in expected if status == 200),
        )

    @inlineCallbacks
    def test_refusedUploadKeepsConnection(self):
        """
        A request with a large body refused by the rules gets its 403, the
        rest of its body is read and dropped, it is logged, and the next
        request on the same connection is answered.
        """
        body = b"x" * (4 * 1024 * 1024)
        data = (
            b"POST /allow-deny/up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
            % len(body)
            + body
            + b"GET /open/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        received = yield rawRequest(self.port4, data)
        self.assertTrue(received.startswith(b"HTTP/1.1 403 Forbidden\r\n"), received[:200])
        self.assertIn(b"not allowed\nHTTP/1.1 200 OK\r\n", received)
        self.assertEqual(len(self.log.lines), 2)

    test_refusedUploadKeepsConnection.timeout = 15

    @inlineCallbacks
    def test_refusalIsLogged(self):
        """
        A 403 leaves a log line with the client's address and the status,
        and the answer says why.
        """
        response = yield self.fetch(b"/deny-allow/x?q=1", "::1")
        self.assertEqual(response.status, 403)
        self.assertIn(b"access from this address is not allowed", response.body)
        self.assertEqual(len(self.log.lines), 1)
        self.assertLogLine(
            self.log, rb'::1 - - \[[^]]+\] "GET /deny-allow/x\?q=1 HTTP/1\.1" 403 \d+ '
        )
        self.assertEqual(self.site.connections, 0)

    @inlineCallbacks
    def test_normalizedPathCannotSlipPast(self):
        """
        Dot-segments and percent-encoded letters are resolved before the
        route, and so its rules, are chosen: they cannot reach a refused
        route's backend through the open C{/} route.
        """
        seen = yield self.statuses(
            [
                (b"/x/../allow-deny/y", "127.0.0.1"),
                (b"/%61llow-deny/y", "127.0.0.1"),
                (b"/./allow-deny/./y", "127.0.0.1"),
                (b"/allow-deny/%2e%2e/allow-deny/y", "127.0.0.1"),
            ]
        )
        self.assertEqual([status for _, status in seen], [403] * 4)
        self.assertEqual(self.recorder.requests, [])

    @inlineCallbacks
    def test_hostRulesInherited(self):
        """
        A host's rules hold for its routes without rules of their own; a
        route's own rules win over its host's.
        """
        seen = yield self.statuses(
            [
                (b"/inherits/x", "127.0.0.1", b"locked.example"),
                (b"/inherits/x", "::1", b"LOCKED.example:80"),
                (b"/own/x", "127.0.0.1", b"locked.example"),
                (b"/own/x", "::1", b"locked.example"),
            ]
        )
        self.assertEqual([status for _, status in seen], [403, 403, 200, 403])
        self.assertEqual([uri for uri, _ in self.recorder.requests], [b"/own/x"])

    @inlineCallbacks
    def test_deniedWebSocketUpgrade(self):
        """
        A websocket upgrade to a refused route gets 403 and a log line, and
        the backend never sees a connection.
        """
        raw = yield rawRequest(self.port4, upgradeThenClose(b"/allow-deny/ws"))
        response = parseResponse(raw)
        self.assertEqual(response.status, 403)
        self.assertIsNone(response.header(b"Upgrade"))
        self.assertIn(b'"GET /allow-deny/ws HTTP/1.1" 403 ', self.log.lines[-1])
        self.assertEqual(self.site.connections, 0)


class BasicAuthTests(BackendTestCase):
    """
    HTTP Basic authentication against an htpasswd file with bcrypt and
    SHA-512-crypt users, for HTTP requests and websocket upgrades.
    """

    def setUp(self):
        """
        Write the htpasswd file; start a backend and a proxy whose
        C{/private/} route asks for a password.
        """
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory, True)
        self.htpasswd = directory + "/users.htpasswd"
        with open(self.htpasswd, "wb") as f:
            for user, (password, hashed) in USERS.items():
                f.write(user + b":" + hashed(password) + b"\n")
        self.recorder, self.site, backendPort = self.backend()
        self.service, self.port, self.log = startProxy(
            self, listen() + route("/private/", backendPort, self.authSetting()) + route("/", backendPort)
        )

    def authSetting(self):
        """
        @return: the C{auth} key of a route, as TOML text.
        """
        return "auth = { htpasswd = %s, realm = %s }" % (
            json.dumps(self.htpasswd),
            json.dumps(REALM),
        )

    def assertChallenged(self, response):
        """
        C{response} is a 401 with the Basic challenge of the test realm.
        """
        self.assertEqual(response.status, 401, response.raw)
        self.assertEqual(
            response.header(b"WWW-Authenticate"),
            [b'Basic realm="Test Realm", charset="UTF-8"'],
        )

    @inlineCallbacks
    def test_noCredentials(self):
        """
        No credentials: 401 with the challenge and a log line; the backend
        is not contacted.  Other routes need none.
        """
        response = yield get(self.port, b"/private/x")
        self.assertChallenged(response)
        self.assertLogLine(self.log, rb'127\.0\.0\.1 - - \[[^]]+\] "GET /private/x HTTP/1\.1" 401 ')
        self.assertEqual(self.site.connections, 0)
        response = yield get(self.port, b"/public")
        self.assertEqual(response.status, 200)

    @inlineCallbacks
    def test_wrongCredentials(self):
        """
        A wrong password, an unknown user, another scheme and a malformed
        header all get 401.
        """
        for value in [
            basic(b"alice", b"builder"),
            basic(b"bob", b"wonderland"),
            basic(b"mallory", b"wonderland"),
            basic(b"alice", b""),
            b"Bearer " + base64.b64encode(b"alice:wonderland"),
            b"Basic !!!not-base64",
        ]:
            response = yield get(self.port, b"/private/x", headers=[(b"Authorization", value)])
            self.assertChallenged(response)
        self.assertEqual(self.recorder.requests, [])

    @inlineCallbacks
    def test_rightCredentials(self):
        """
        The right password of a bcrypt and of a SHA-512-crypt user: 200,
        and the user name in the log line's C{%u} field.
        """
        for user, (password, _) in USERS.items():
            response = yield get(
                self.port, b"/private/x", headers=[(b"Authorization", basic(user, password))]
            )
            self.assertEqual((response.status, response.body), (200, b"backend /private/x"))
            self.assertLogLine(
                self.log,
                rb"127\.0\.0\.1 - " + user + rb' \[[^]]+\] "GET /private/x HTTP/1\.1" 200 ',
            )
        self.assertEqual(len(self.recorder.requests), 2)

    @inlineCallbacks
    def test_webSocketWithoutCredentials(self):
        """
        A websocket upgrade without credentials gets 401 with the challenge;
        the backend never sees a connection.
        """
        raw = yield rawRequest(self.port, upgradeThenClose(b"/private/ws"))
        self.assertChallenged(parseResponse(raw))
        self.assertIn(b'"GET /private/ws HTTP/1.1" 401 ', self.log.lines[-1])
        self.assertEqual(self.site.connections, 0)

    @inlineCallbacks
    def test_webSocketWithCredentials(self):
        """
        A websocket upgrade with the right password opens once the password
        is checked, relays messages, and its log line, written at close,
        has the user name in C{%u}.
        """
        backend = EchoBackend(self)
        service, port, log = startProxy(
            self,
            listen()
            + '[[route]]\npath = "/"\nbackend = "ws://127.0.0.1:%d/"\n%s\n'
            % (backend.port, self.authSetting()),
        )
        client = yield connectRaw(
            self,
            port,
            upgradeRequest(b"/echo", b"127.0.0.1", [(b"Authorization", basic(b"alice", b"wonderland"))]),
        )
        head = yield client.head.wait()
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
        client.transport.write(encodeFrame(TEXT, b"hello"))
        message = yield client.nextMessage()
        self.assertEqual(message, (TEXT, b"hello"))
        client.transport.write(encodeFrame(CLOSE, closePayload(1000)))
        message = yield client.nextMessage()
        self.assertEqual(message[0], CLOSE)
        yield client.lost.wait()
        yield waitUntil(lambda: log.lines)
        self.assertLogLine(log, rb'127\.0\.0\.1 - alice \[[^]]+\] "GET /echo HTTP/1\.1" 101 ')


class TrustedProxyTests(BackendTestCase):
    """
    C{trusted_proxies}: the client behind a trusted proxy is the rightmost
    untrusted address of C{X-Forwarded-For}, for the log and the rules.
    """

    def start(self, trusted=True):
        """
        Start a backend and a proxy whose C{/guarded/} route refuses
        203.0.113.0/24.

        @param trusted: whether 127.0.0.1 is a trusted proxy.
        @return: C{(recorder, proxy port, access log)}.
        """
        recorder, site, backendPort = self.backend()
        server = '[server]\ntrusted_proxies = ["127.0.0.1/32"]\n' if trusted else ""
        service, port, log = startProxy(
            self,
            server
            + listen()
            + route("/guarded/", backendPort, 'deny = ["203.0.113.0/24"]')
            + route("/", backendPort),
        )
        return recorder, port, log

    @inlineCallbacks
    def test_clientFromForwardedFor(self):
        """
        The log line starts with the forwarded client; the backend gets the
        chain extended with the immediate peer.
        """
        recorder, port, log = self.start()
        response = yield get(
            port, b"/x", headers=[(b"X-Forwarded-For", b"203.0.113.7, 127.0.0.1")]
        )
        self.assertEqual(response.status, 200)
        self.assertTrue(log.lines[-1].startswith(b"203.0.113.7 - - ["), log.lines[-1])
        self.assertEqual(recorder.requests[-1][1], [b"203.0.113.7, 127.0.0.1, 127.0.0.1"])

    @inlineCallbacks
    def test_rightmostUntrusted(self):
        """
        Addresses left of the first untrusted one (from the right) are
        whatever the client wrote and are not believed; a request without
        the header comes from the peer.
        """
        recorder, port, log = self.start()
        cases = [
            (b"198.51.100.1, 203.0.113.7, 127.0.0.1", b"203.0.113.7 "),
            (b"203.0.113.7, 198.51.100.1", b"198.51.100.1 "),
            (None, b"127.0.0.1 "),
        ]
        for header, start in cases:
            headers = [(b"X-Forwarded-For", header)] if header else []
            yield get(port, b"/x", headers=headers)
            self.assertTrue(log.lines[-1].startswith(start + b"- - ["), log.lines[-1])

    @inlineCallbacks
    def test_rulesApplyToForwardedClient(self):
        """
        Address rules judge the forwarded client: 203.0.113.7 is refused,
        another forwarded client and the proxy itself are let in.
        """
        recorder, port, log = self.start()
        seen = []
        for header in (b"203.0.113.7, 127.0.0.1", b"198.51.100.1", b"203.0.113.7, 198.51.100.1", None):
            headers = [(b"X-Forwarded-For", header)] if header else []
            response = yield get(port, b"/guarded/x", headers=headers)
            seen.append(response.status)
        self.assertEqual(seen, [403, 200, 200, 200])
        self.assertTrue(log.lines[0].startswith(b"203.0.113.7 - - ["), log.lines[0])
        self.assertIn(b" 403 ", log.lines[0])

    @inlineCallbacks
    def test_untrustedPeer(self):
        """
        Without C{trusted_proxies}, C{X-Forwarded-For} is only passed on:
        the log shows the peer and the rules judge it, so a client cannot
        claim another address.
        """
        recorder, port, log = self.start(trusted=False)
        response = yield get(
            port, b"/guarded/x", headers=[(b"X-Forwarded-For", b"203.0.113.7, 127.0.0.1")]
        )
        self.assertEqual(response.status, 200)
        self.assertTrue(log.lines[-1].startswith(b"127.0.0.1 - - ["), log.lines[-1])
        self.assertEqual(recorder.requests[-1][1], [b"203.0.113.7, 127.0.0.1, 127.0.0.1"])


class ProxyProtocolTests(BackendTestCase):
    """
    C{proxy_protocol = true}: the client address comes from a PROXY
    protocol header, v1 or v2, in front of every connection.
    """

    def start(self, server=""):
        """
        Start a backend and a proxy whose listener takes PROXY headers.

        @return: C{(recorder, site, proxy port, access log)}.
        """
        recorder, site, backendPort = self.backend()
        service, port, log = startProxy(
            self,
            server
            + listen(extra="proxy_protocol = true")
            + route("/guarded/", backendPort, 'deny = ["198.51.100.0/24"]')
            + route("/", backendPort),
        )
        return recorder, site, port, log

    @inlineCallbacks
    def test_version1(self):
        """
        A v1 header: the log line starts with its source address, and the
        backend's C{X-Forwarded-For} is that address.
        """
        recorder, site, port, log = self.start()
        response = yield get(
            port, b"/x", prefix=b"PROXY TCP4 198.51.100.9 127.0.0.1 5555 80\r\n"
        )
        self.assertEqual((response.status, response.body), (200, b"backend /x"))
        self.assertTrue(log.lines[-1].startswith(b"198.51.100.9 - - ["), log.lines[-1])
        self.assertEqual(recorder.requests[-1][1], [b"198.51.100.9"])

    @inlineCallbacks
    def test_version1IPv6(self):
        """
        A v1 C{TCP6} header gives an IPv6 client.
        """
        recorder, site, port, log = self.start()
        response = yield get(
            port, b"/x", prefix=b"PROXY TCP6 2001:db8::9 ::1 5555 80\r\n"
        )
        self.assertEqual(response.status, 200)
        self.assertTrue(log.lines[-1].startswith(b"2001:db8::9 - - ["), log.lines[-1])
        self.assertEqual(recorder.requests[-1][1], [b"2001:db8::9"])

    @inlineCallbacks
    def test_version2(self):
        """
        A binary v2 header, built per the specification, works the same.
        """
        recorder, site, port, log = self.start()
        header = proxyV2Header("198.51.100.9", "127.0.0.1", 5555, 80)
        self.assertEqual(len(header), 16 + 12)
        response = yield get(port, b"/x", prefix=header)
        self.assertEqual(response.status, 200)
        self.assertTrue(log.lines[-1].startswith(b"198.51.100.9 - - ["), log.lines[-1])
        self.assertEqual(recorder.requests[-1][1], [b"198.51.100.9"])

    @inlineCallbacks
    def test_rulesJudgeProxiedClient(self):
        """
        Address rules judge the address of the PROXY header.
        """
        recorder, site, port, log = self.start()
        refused = yield get(
            port, b"/guarded/x", prefix=b"PROXY TCP4 198.51.100.9 127.0.0.1 5555 80\r\n"
        )
        admitted = yield get(
            port, b"/guarded/x", prefix=b"PROXY TCP4 192.0.2.1 127.0.0.1 5555 80\r\n"
        )
        self.assertEqual((refused.status, admitted.status), (403, 200))

    @inlineCallbacks
    def test_forwardedForNotBelieved(self):
        """
        With C{trusted_proxies} naming the loopback, the peer that counts is
        the PROXY header's source, which is not trusted: a client cannot
        pick its address with C{X-Forwarded-For}.
        """
        recorder, site, port, log = self.start('[server]\ntrusted_proxies = ["127.0.0.1/32"]\n')
        response = yield get(
            port,
            b"/x",
            headers=[(b"X-Forwarded-For", b"203.0.113.7")],
            prefix=b"PROXY TCP4 198.51.100.9 127.0.0.1 5555 80\r\n",
        )
        self.assertEqual(response.status, 200)
        self.assertTrue(log.lines[-1].startswith(b"198.51.100.9 - - ["), log.lines[-1])

    @inlineCallbacks
    def test_withoutHeaderClosed(self):
        """
        A connection that starts without a PROXY header is closed without
        an answer, a log line or a backend request.
        """
        recorder, site, port, log = self.start()
        raw = yield rawRequest(port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(raw, b"")
        raw = yield rawRequest(port, b"PROXY BOGUS\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(raw, b"")
        self.assertEqual(log.lines, [])
        self.assertEqual(site.connections, 0)
