"""
Plugins end to end over 127.0.0.1: each shipped plugin through a real proxy
to real backends and clients (raw HTTP, the C{websockets} library's client,
Autobahn's echo backend), and plugins that raise, hold the event loop,
answer later, or never answer.
"""

import base64
import json
import os
import tempfile
import time

import jwt
from autobahn.websocket.compress import PerMessageDeflateOfferAccept
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as websocketsConnect
from zope.interface import implementer

from proxyws.interfaces import IRequestFilter

from .helpers import rawRequest, startBackend, startProxy
from .plugintools import Failing, Rewriter, Slow, factoryOf, withPlugins
from .wsbackends import WAIT, EchoBackend

SECRET = "loopback-secret"


class HeaderEcho(Resource):
    """
    Answers with the request's headers as JSON, with C{Server} and
    C{X-Internal} headers of its own.

    @ivar requests: how many requests it answered.
    """

    isLeaf = True
    requests = 0

    def render(self, request):
        """
        Echo the headers.
        """
        HeaderEcho.requests += 1
        request.setHeader(b"Server", b"backend/1.0")
        request.setHeader(b"X-Internal", b"secret")
        request.setHeader(b"Content-Type", b"application/json")
        headers = {
            name.decode("latin-1").lower(): [v.decode("latin-1") for v in values]
            for name, values in request.requestHeaders.getAllRawHeaders()
        }
        return json.dumps({"path": request.uri.decode("latin-1"), "headers": headers}).encode()


def config(backendPort, route="", server="", ws=False):
    """
    A config with one listener and one route C{/} to the backend, with more
    C{route} and C{server} lines.
    """
    scheme = "ws" if ws else "http"
    return (
        "[server]\n%s\n\n[[listen]]\naddress = \"127.0.0.1\"\nport = 0\n\n"
        "[[route]]\npath = \"/\"\nbackend = \"%s://127.0.0.1:%d/\"\n%s\n"
        % (server, scheme, backendPort, route)
    )


def request(port, method=b"GET", target=b"/x", headers=()):
    """
    Send one request and read the whole response (the connection closes).

    @return: a L{Deferred} firing with C{(status, headers dict of lists,
        body)}.
    """
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    sent = rawRequest(port, b"\r\n".join(lines) + b"\r\n\r\n")

    def parse(data):
        head, _, body = data.partition(b"\r\n\r\n")
        status, *fields = head.split(b"\r\n")
        parsed = {}
        for field in fields:
            name, _, value = field.partition(b":")
            parsed.setdefault(name.strip().lower(), []).append(value.strip())
        return int(status.split(b" ")[1]), parsed, body

    return sent.addCallback(parse)


def talk(port, messages, path="/echo", compression="deflate", headers=None):
    """
    Open a websocket with the C{websockets} client (in a thread), send each
    message (a list of pieces is sent as one fragmented message) and read
    an answer after each, then read until the close.

    @return: C{(answers, close code, close reason)}.
    """
    answers = []
    with websocketsConnect(
        "ws://127.0.0.1:%d%s" % (port, path),
        compression=compression,
        additional_headers=headers,
        open_timeout=WAIT,
        close_timeout=WAIT,
        ping_interval=None,
        max_size=None,
    ) as ws:
        try:
            for message in messages:
                ws.send(message)
                answers.append(ws.recv(timeout=WAIT))
            ws.recv(timeout=0.3)
        except ConnectionClosed:
            pass
        except TimeoutError:
            ws.close()
        return answers, ws.close_code, ws.close_reason


class LoopbackTestCase(TestCase):
    """
    A proxy in this process and real backends.
    """

    timeout = 20

    def setUp(self):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.directory = tempfile.mkdtemp()

    def httpProxy(self, route="", server=""):
        """
        A proxy to a L{HeaderEcho} backend.

        @return: the proxy's port.
        """
        HeaderEcho.requests = 0
        _, backendPort = startBackend(self, HeaderEcho())
        return startProxy(self, config(backendPort, route, server))[1]

    def wsProxy(self, route="", accept=True):
        """
        A proxy to Autobahn's echo backend (accepting compression).

        @return: C{(proxy port, backend)}.
        """
        self.backend = EchoBackend(self)
        if accept:
            self.backend.factory.setProtocolOptions(
                perMessageCompressionAccept=lambda offers: PerMessageDeflateOfferAccept(offers[0])
            )
        return startProxy(self, config(self.backend.port, route, ws=True))[1]


class HeadersTests(LoopbackTestCase):
    """
    The C{headers} plugin on requests and responses.
    """

    @inlineCallbacks
    def test_requestsAndResponses(self):
        """
        Request fields are set and removed before the backend gets them,
        response fields before the client gets them; C{[server]} plugins
        apply to every route.
        """
        port = self.httpProxy(
            route='plugins = [{ name = "headers", request_set = { X-Proxy = "proxyws" }, '
            'request_remove = ["X-Secret"] }]',
            server='plugins = [{ name = "headers", set = { X-Frame-Options = "DENY" }, '
            'remove = ["Server", "X-Internal"], add = { Vary = "Accept" } }]',
        )
        status, headers, body = yield request(port, headers=[(b"X-Secret", b"s")])
        self.assertEqual(status, 200)
        seen = json.loads(body)["headers"]
        self.assertEqual(seen["x-proxy"], ["proxyws"])
        self.assertNotIn("x-secret", seen)
        self.assertEqual(headers[b"x-frame-options"], [b"DENY"])
        self.assertEqual(headers[b"vary"], [b"Accept"])
        self.assertNotIn(b"server", headers)
        self.assertNotIn(b"x-internal", headers)


class CORSTests(LoopbackTestCase):
    """
    The C{cors} plugin: preflights answered, responses marked.
    """

    route = (
        'plugins = [{ name = "cors", origins = ["https://app.example.com"], '
        'credentials = true, expose_headers = ["X-Total"], max_age = 60 }]'
    )

    @inlineCallbacks
    def test_preflight(self):
        """
        An allowed preflight gets 204 with the C{Access-Control-Allow-*}
        fields; the backend never sees it.
        """
        port = self.httpProxy(self.route)
        status, headers, body = yield request(
            port,
            b"OPTIONS",
            headers=[
                (b"Origin", b"https://app.example.com"),
                (b"Access-Control-Request-Method", b"PUT"),
                (b"Access-Control-Request-Headers", b"Content-Type, X-Token"),
            ],
        )
        self.assertEqual((status, body), (204, b""))
        self.assertEqual(headers[b"access-control-allow-origin"], [b"https://app.example.com"])
        self.assertEqual(
            headers[b"access-control-allow-methods"], [b"DELETE, GET, HEAD, PATCH, POST, PUT"]
        )
        self.assertEqual(headers[b"access-control-allow-headers"], [b"content-type, x-token"])
        self.assertEqual(headers[b"access-control-allow-credentials"], [b"true"])
        self.assertEqual(headers[b"access-control-max-age"], [b"60"])
        self.assertEqual(HeaderEcho.requests, 0)

    @inlineCallbacks
    def test_refusedPreflight(self):
        """
        A preflight from another origin gets 403.
        """
        port = self.httpProxy(self.route)
        status, headers, _ = yield request(
            port, b"OPTIONS",
            headers=[(b"Origin", b"https://evil.example"), (b"Access-Control-Request-Method", b"GET")],
        )
        self.assertEqual(status, 403)
        self.assertNotIn(b"access-control-allow-origin", headers)

    @inlineCallbacks
    def test_actualRequest(self):
        """
        A request from an allowed origin reaches the backend, and its
        response gets the CORS fields and C{Vary: Origin}; one from another
        origin gets none.
        """
        port = self.httpProxy(self.route)
        status, headers, _ = yield request(port, headers=[(b"Origin", b"https://app.example.com")])
        self.assertEqual(status, 200)
        self.assertEqual(headers[b"access-control-allow-origin"], [b"https://app.example.com"])
        self.assertEqual(headers[b"access-control-expose-headers"], [b"X-Total"])
        self.assertEqual(headers[b"vary"], [b"Origin"])
        status, headers, _ = yield request(port, headers=[(b"Origin", b"https://evil.example")])
        self.assertNotIn(b"access-control-allow-origin", headers)

    @inlineCallbacks
    def test_beforeAuthentication(self):
        """
        Listed before an authenticator, CORS answers the preflight (which
        browsers send without credentials); the request itself needs them.
        """
        users = os.path.join(self.directory, "users")
        with open(users, "w") as f:
            f.write("alice:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=\n")  # "test"
        port = self.httpProxy(
            'plugins = [{ name = "cors", origins = ["*"] }, '
            '{ name = "htpasswd", file = "%s" }]' % users
        )
        status, _, _ = yield request(
            port, b"OPTIONS",
            headers=[(b"Origin", b"https://a.example"), (b"Access-Control-Request-Method", b"GET")],
        )
        self.assertEqual(status, 204)
        status, headers, _ = yield request(port, headers=[(b"Origin", b"https://a.example")])
        self.assertEqual(status, 401)
        self.assertEqual(headers[b"www-authenticate"], [b'Basic realm="proxyws", charset="UTF-8"'])
        status, headers, _ = yield request(
            port,
            headers=[(b"Origin", b"https://a.example"),
                     (b"Authorization", b"Basic " + base64.b64encode(b"alice:test"))],
        )
        self.assertEqual(status, 200)
        self.assertEqual(headers[b"access-control-allow-origin"], [b"*"])


class JWTTests(LoopbackTestCase):
    """
    The C{jwt} authenticator.
    """

    def setUp(self):
        LoopbackTestCase.setUp(self)
        os.environ["PROXYWS_LOOPBACK_JWT"] = SECRET
        self.addCleanup(os.environ.pop, "PROXYWS_LOOPBACK_JWT")

    route = (
        'plugins = [{ name = "jwt", secret_env = "PROXYWS_LOOPBACK_JWT", audience = "app", '
        'user_header = "X-Forwarded-User", query = "token" }]'
    )

    def token(self, **claims):
        payload = {"sub": "alice", "aud": "app", "exp": int(time.time()) + 60}
        payload.update(claims)
        return jwt.encode(payload, SECRET, algorithm="HS256").encode("ascii")

    @inlineCallbacks
    def test_http(self):
        """
        A valid bearer token lets the request through with the user named
        for the backend (the client's own copy dropped); none gets a
        challenge; a bad one says why.
        """
        port = self.httpProxy(self.route)
        status, _, body = yield request(
            port,
            headers=[(b"Authorization", b"Bearer " + self.token()),
                     (b"X-Forwarded-User", b"mallory")],
        )
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["headers"]["x-forwarded-user"], ["alice"])
        status, headers, _ = yield request(port)
        self.assertEqual(status, 401)
        self.assertEqual(headers[b"www-authenticate"], [b'Bearer realm="proxyws"'])
        for bad in (self.token(exp=int(time.time()) - 10), self.token(aud="other"),
                    jwt.encode({"sub": "a", "exp": 9e9}, "wrong", algorithm="HS256").encode()):
            status, headers, body = yield request(port, headers=[(b"Authorization", b"Bearer " + bad)])
            self.assertEqual(status, 401)
            self.assertEqual(
                headers[b"www-authenticate"], [b'Bearer realm="proxyws", error="invalid_token"']
            )
        self.assertEqual(HeaderEcho.requests, 1)

    @inlineCallbacks
    def test_webSocket(self):
        """
        A websocket upgrade carries its token in the query (browsers cannot
        set headers on one); without it, the upgrade gets 401.
        """
        port = self.wsProxy(self.route)
        path = "/echo?token=" + self.token().decode("ascii")
        answers, _, _ = yield deferToThread(talk, port, ["hi"], path)
        self.assertEqual(answers, ["hi"])
        self.assertEqual(self.backend.handshakes[0].headers["x-forwarded-user"], "alice")
        status, _, _ = yield request(
            port, target=b"/echo",
            headers=[(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
                     (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
                     (b"Sec-WebSocket-Version", b"13")],
        )
        self.assertEqual(status, 401)


class WebSocketLimitTests(LoopbackTestCase):
    """
    The C{ws-limit} plugin.
    """

    @inlineCallbacks
    def test_size(self):
        """
        A message larger than C{max_message_size} (once inflated) closes
        the websocket with 1009 and a reason.
        """
        port = self.wsProxy('plugins = [{ name = "ws-limit", max_message_size = 1000 }]')
        answers, code, reason = yield deferToThread(talk, port, ["a" * 1000, "b" * 1001, "c"])
        self.assertEqual(answers, ["a" * 1000])
        self.assertEqual((code, reason), (1009, "message of 1001 bytes over the limit of 1000"))

    @inlineCallbacks
    def test_rate(self):
        """
        More than C{max_messages} messages within C{per} seconds closes the
        websocket with 1008.
        """
        port = self.wsProxy('plugins = [{ name = "ws-limit", max_messages = 3, per = 60 }]')
        answers, code, reason = yield deferToThread(talk, port, ["1", "2", "3", "4", "5"])
        self.assertEqual(answers, ["1", "2", "3"])
        self.assertEqual((code, reason), (1008, "more than 3 messages in 60 s"))


class AuditTests(LoopbackTestCase):
    """
    The C{ws-audit} plugin.
    """

    @inlineCallbacks
    def test_lines(self):
        """
        A websocket leaves an C{open} line, a line per message with the
        redacted JSON, and a C{close} line.
        """
        log = os.path.join(self.directory, "audit.log")
        port = self.wsProxy(
            'plugins = [{ name = "ws-audit", path = "%s", redact = ["password"] }]' % log
        )
        message = json.dumps({"user": "a", "Password": "hunter2", "nested": [{"password": 1}]})
        yield deferToThread(talk, port, [message, "plain text", b"\x00\x01"])
        lines = [json.loads(line) for line in open(log, encoding="utf-8")]
        self.assertEqual([line["event"] for line in lines], ["open"] + ["message"] * 6 + ["close"])
        self.assertEqual(lines[0]["uri"], "/echo")
        self.assertEqual(len({line["connection"] for line in lines}), 1)
        redacted = {"user": "a", "Password": "[redacted]", "nested": [{"password": "[redacted]"}]}
        self.assertEqual([line.get("json") for line in lines[1:3]], [redacted, redacted])
        self.assertEqual([line["direction"] for line in lines[1:7]], ["in", "out"] * 3)
        self.assertEqual(lines[3]["text"], "plain text")
        self.assertEqual((lines[5]["type"], lines[5]["size"]), ("binary", 2))
        self.assertEqual(lines[-1]["code"], 1000)
        self.assertNotIn("hunter2", open(log, encoding="utf-8").read())


@implementer(IRequestFilter)
class Later:
    """
    Answers each request after C{seconds}, through a L{Deferred}.
    """

    def __init__(self, seconds):
        self.seconds = seconds

    def filterRequest(self, request):
        """
        Let the request pass later.
        """
        from twisted.internet import reactor

        answer = Deferred()
        reactor.callLater(self.seconds, answer.callback, None)
        return answer


@implementer(IRequestFilter)
class Never:
    """
    Answers each request with a L{Deferred} that never fires.
    """

    def filterRequest(self, request):
        """
        Never answer.
        """
        return Deferred()


class IsolationTests(LoopbackTestCase):
    """
    A plugin that raises, holds the event loop, answers later or never:
    only its own requests suffer, and the server keeps running.
    """

    def proxyWith(self, **providers):
        """
        A proxy whose route C{/p/} has the plugin C{p}; C{/} has none.
        """
        withPlugins(self, **{name: factoryOf(p) for name, p in providers.items()})
        HeaderEcho.requests = 0
        _, backendPort = startBackend(self, HeaderEcho())
        text = config(backendPort, server="plugin_timeout = 0.5") + (
            '[[route]]\npath = "/p/"\nbackend = "http://127.0.0.1:%d/p/"\n'
            'plugins = [{ name = "p" }]\n' % backendPort
        )
        # The plugin route first, so that it takes /p/.
        text = text.replace('[[route]]\npath = "/"', '[[route]]\npath = "/z/"', 1)
        text += '[[route]]\npath = "/"\nbackend = "http://127.0.0.1:%d/"\n' % backendPort
        return startProxy(self, text)[1]

    @inlineCallbacks
    def test_raises(self):
        """
        A raising plugin: its request gets 500, logged once with the
        plugin's name; another route still answers.
        """
        port = self.proxyWith(p=Failing())
        status, _, _ = yield request(port, target=b"/p/x")
        self.assertEqual(status, 500)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        status, _, _ = yield request(port, target=b"/other")
        self.assertEqual(status, 200)

    @inlineCallbacks
    def test_slow(self):
        """
        A plugin that holds the event loop: the request is answered, and a
        warning names the plugin and the time.
        """
        port = self.proxyWith(p=Slow(0.05))
        status, _, _ = yield request(port, target=b"/p/x")
        self.assertEqual(status, 200)
        warnings = [e for e in self.events if "held the event loop" in (e.get("log_format") or "")]
        self.assertEqual([e["plugin"] for e in warnings], ["p"])
        self.assertGreaterEqual(warnings[0]["ms"], 50)

    @inlineCallbacks
    def test_later(self):
        """
        A plugin answering through a L{Deferred}: the request goes on when
        it fires.
        """
        port = self.proxyWith(p=Later(0.1))
        status, _, body = yield request(port, target=b"/p/x")
        self.assertEqual((status, json.loads(body)["path"]), (200, "/p/x"))

    @inlineCallbacks
    def test_never(self):
        """
        A plugin whose L{Deferred} never fires: 504 after
        C{plugin_timeout}; the backend never sees the request.
        """
        port = self.proxyWith(p=Never())
        status, _, body = yield request(port, target=b"/p/x")
        self.assertEqual(status, 504)
        self.assertEqual(HeaderEcho.requests, 0)


class WebSocketRewriteTests(LoopbackTestCase):
    """
    A websocket filter rewriting compressed and fragmented messages between
    the C{websockets} client and Autobahn's echo backend.
    """

    @inlineCallbacks
    def test_compressedAndFragmented(self):
        """
        Whole, fragmented, compressed and binary messages: the filter
        upper-cases text on the way in and on the way back.
        """
        rewriter = Rewriter()
        withPlugins(self, rewriter=factoryOf(rewriter))
        port = self.wsProxy('plugins = [{ name = "rewriter" }]')
        long = "words that compress " * 500
        messages = ["hello", ["frag", "mented ", long], long, b"\x00binary" * 100, "keep it"]
        answers, code, _ = yield deferToThread(talk, port, messages)
        self.assertEqual(
            answers,
            ["HELLO", "FRAGMENTED " + long.upper(), long.upper(), b"\x00binary" * 100, "keep it"],
        )
        self.assertIn("permessage-deflate", self.backend.handshakes[0].headers["sec-websocket-extensions"])
        received = self.backend.last().received
        self.assertEqual(received[1][0], ("FRAGMENTED " + long.upper()).encode())


class ReloadTests(LoopbackTestCase):
    """
    A reload builds the plugins of the new config.
    """

    @inlineCallbacks
    def test_rebuilt(self):
        """
        New options take effect for new requests; a config naming a plugin
        that is not installed is refused, and the plugins in force stay.
        """
        from proxyws.config import parseConfig

        HeaderEcho.requests = 0
        _, backendPort = startBackend(self, HeaderEcho())
        text = lambda plugin, version: config(
            backendPort, 'plugins = [{ name = "%s", set = { X-Version = "%s" } }]' % (plugin, version)
        )
        service, port, _ = startProxy(self, text("headers", "1"))
        _, headers, _ = yield request(port)
        self.assertEqual(headers[b"x-version"], [b"1"])
        result = yield service.reload(parseConfig(text("headers", "2"), service.config.path))
        self.assertTrue(result.succeeded, result.problems)
        _, headers, _ = yield request(port)
        self.assertEqual(headers[b"x-version"], [b"2"])
        result = yield service.reload(parseConfig(text("headerz", "3"), service.config.path))
        self.assertFalse(result.succeeded)
        self.assertIn("route[0].plugins[0].name: 'headerz' is not an installed plugin", result.problems[0])
        _, headers, _ = yield request(port)
        self.assertEqual(headers[b"x-version"], [b"2"])
