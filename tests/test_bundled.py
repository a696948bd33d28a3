"""
Tests for the shipped plugins' own rules, without sockets: their options
(each refusal's exact text), CORS decisions as a table, the message limits
on a clock, the audit log's redaction and lines, the JWT checks.
"""

import json
import os
import sys
import subprocess
import tempfile
import time

import jwt
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from proxyws.bundled.cors import corsPlugin
from proxyws.bundled.headers import headersPlugin
from proxyws.bundled.jwtauth import jwtPlugin
from proxyws.bundled.wsaudit import AuditLog, auditPlugin, redacted
from proxyws.bundled.wslimit import limitPlugin
from proxyws.accesslog import MemoryAccessLog
from proxyws.errors import PluginOptionError
from proxyws.plugins import Close, Identity, PluginOptions, PluginResponse, Response
from proxyws.wsmessages import Message, WebSocketConnection

from .helpers import ROOT


class FakeRequest:
    """
    What the shipped plugins read of a L{proxyws.plugins.PluginRequest}.
    """

    def __init__(self, method=b"GET", headers=(), uri=b"/x", webSocket=False):
        self.method = method
        self.uri = uri
        self.headers = Headers()
        for name, value in headers:
            self.headers.addRawHeader(name, value)
        self.webSocket = webSocket
        self.state = {}
        self.clientAddress = "10.0.0.1"
        self.user = None


def options(**table):
    """
    @return: L{PluginOptions} of C{table}, relative to a temporary folder.
    """
    return PluginOptions(table, tempfile.mkdtemp())


class OptionErrorTests(SynchronousTestCase):
    """
    Each option a shipped plugin refuses, with its exact message.
    """

    # (factory, options) -> (key, message)
    ERRORS = [
        (headersPlugin, {}, (None, "give at least one of set, add, remove, request_set, "
                                   "request_add, request_remove")),
        (headersPlugin, {"set": {"X A": "b"}}, ("set.X A", "'X A' is not a header field name")),
        (headersPlugin, {"remove": ["ok", "b@d"]}, ("remove[1]", "'b@d' is not a header field name")),
        (headersPlugin, {"request_add": {"A": "x\ny"}}, (
            "request_add.A", "'x\\ny' is not a header value (text without control "
            "characters) or a list of them")),
        (corsPlugin, {}, ("origins", "is required and missing")),
        (corsPlugin, {"origins": []}, ("origins", "is empty: list the origins that may call this route")),
        (corsPlugin, {"origins": ["*"], "methods": ["GET", "B AD"]}, (
            "methods[1]", "'B AD' is not a method or header name")),
        (corsPlugin, {"origins": ["*"], "preflight_status": 201}, (
            "preflight_status", "201 is not 200 or 204")),
        (corsPlugin, {"origins": ["*"], "credentials": "yes"}, (
            "credentials", "'yes' is not true or false")),
        (limitPlugin, {}, (None, "give max_message_size, max_messages or both")),
        (limitPlugin, {"max_messages": 1, "per": 0}, ("per", "0 is not a number of seconds above 0")),
        (limitPlugin, {"max_messages": 1, "direction": "up"}, (
            "direction", "'up' is not 'in', 'out' or 'both'")),
        (limitPlugin, {"max_message_size": 1.5}, (
            "max_message_size", "1.5 is not a whole number of at least 0")),
        (auditPlugin, {"path": "-", "binary": "hex"}, ("binary", "'hex' is not 'size' or 'base64'")),
        (auditPlugin, {"path": "/nonexistent/dir/a.log"}, (
            "path", "cannot open '/nonexistent/dir/a.log' for appending: No such file or directory")),
        (jwtPlugin, {}, (None, "give exactly one of secret_env and public_key")),
        (jwtPlugin, {"secret_env": "PROXYWS_UNSET_VARIABLE"}, (
            "secret_env", "the environment variable 'PROXYWS_UNSET_VARIABLE' is not set (or "
            "empty); set it to the tokens' HMAC secret")),
        (jwtPlugin, {"secret_env": "PROXYWS_TEST_SECRET", "algorithms": ["none"]}, (
            "algorithms[0]", "'none' is not one of HS256, HS384, HS512 (for this kind of key)")),
        (jwtPlugin, {"secret_env": "PROXYWS_TEST_SECRET", "user_header": "X User"}, (
            "user_header", "'X User' is not a header field name")),
    ]

    def test_errors(self):
        """
        Each of L{ERRORS} raises L{PluginOptionError} with its key and
        message.
        """
        os.environ["PROXYWS_TEST_SECRET"] = "s"
        self.addCleanup(os.environ.pop, "PROXYWS_TEST_SECRET")
        for factory, table, expected in self.ERRORS:
            error = self.assertRaises(PluginOptionError, factory, options(**table))
            self.assertEqual((error.key, error.message), expected, (factory, table))


class HeadersTests(SynchronousTestCase):
    """
    The C{headers} plugin's rules: removals, then sets, then additions.
    """

    def test_response(self):
        """
        On a response, fields keep their order; a set takes the place of
        the first field of its name.
        """
        plugin = headersPlugin(options(
            set={"Cache-Control": "no-store", "X-Two": ["a", "b"]},
            add={"Link": "</a>"}, remove=["Server"],
        ))
        response = PluginResponse(200, b"OK", [
            (b"Server", b"x"), (b"cache-control", b"max-age=1"), (b"Date", b"d"), (b"Link", b"</z>"),
        ])
        plugin.filterResponse(None, response)
        self.assertEqual(response.fields, [
            (b"Cache-Control", b"no-store"), (b"Date", b"d"), (b"Link", b"</z>"),
            (b"X-Two", b"a"), (b"X-Two", b"b"), (b"Link", b"</a>"),
        ])


class CORSTests(SynchronousTestCase):
    """
    The C{cors} plugin's decisions.
    """

    # (origins, credentials) of the policy, the request's (method, Origin,
    # Access-Control-Request-Method) -> preflight status or None (not a
    # preflight), and Access-Control-Allow-Origin of the answer.
    TABLE = [
        ((["https://a.example"], False), (b"OPTIONS", b"https://a.example", b"GET"), (204, b"https://a.example")),
        ((["https://a.example"], False), (b"OPTIONS", b"https://A.example", b"get"), (204, b"https://A.example")),
        ((["https://a.example"], False), (b"OPTIONS", b"https://b.example", b"GET"), (403, None)),
        ((["https://a.example"], False), (b"OPTIONS", b"https://a.example", b"TRACE"), (403, None)),
        ((["*"], False), (b"OPTIONS", b"https://any.example", b"POST"), (204, b"*")),
        ((["*"], True), (b"OPTIONS", b"https://any.example", b"POST"), (204, b"https://any.example")),
        ((["https://*.example.com"], False), (b"OPTIONS", b"https://x.example.com", b"GET"), (204, b"https://x.example.com")),
        ((["https://*.example.com"], False), (b"OPTIONS", b"https://example.com", b"GET"), (403, None)),
        ((["https://*.example.com"], False), (b"OPTIONS", b"http://x.example.com", b"GET"), (403, None)),
        ((["*"], False), (b"OPTIONS", None, b"GET"), (None, None)),
        ((["*"], False), (b"GET", b"https://a.example", None), (None, None)),
    ]

    def test_preflights(self):
        """
        Each row of L{TABLE}.
        """
        for (origins, credentials), (method, origin, asked), (status, allowed) in self.TABLE:
            cors = corsPlugin(options(origins=origins, credentials=credentials))
            headers = []
            if origin:
                headers.append((b"Origin", origin))
            if asked:
                headers.append((b"Access-Control-Request-Method", asked))
            answer = cors.filterRequest(FakeRequest(method, headers))
            row = (origins, method, origin, asked)
            if status is None:
                self.assertIsNone(answer, row)
                continue
            self.assertEqual(answer.code, status, row)
            fields = dict((n.lower(), v) for n, v in answer.headers)
            self.assertEqual(fields.get("access-control-allow-origin"), allowed, row)

    def test_requestedHeaders(self):
        """
        With C{headers}, a preflight asking for others is refused.
        """
        cors = corsPlugin(options(origins=["*"], headers=["X-Token"]))
        asking = lambda names: FakeRequest(b"OPTIONS", [
            (b"Origin", b"https://a"), (b"Access-Control-Request-Method", b"GET"),
            (b"Access-Control-Request-Headers", names),
        ])
        self.assertEqual(cors.filterRequest(asking(b"x-token")).code, 204)
        self.assertEqual(cors.filterRequest(asking(b"x-token, x-other")).code, 403)

    def test_websocketsLeftAlone(self):
        """
        A websocket upgrade with an Origin is not CORS's business.
        """
        cors = corsPlugin(options(origins=["https://a"]))
        request = FakeRequest(headers=[(b"Origin", b"https://a")], webSocket=True)
        self.assertIsNone(cors.filterRequest(request))
        self.assertEqual(request.state, {})

    def test_varyKept(self):
        """
        C{Origin} is added to the backend's own C{Vary}.
        """
        cors = corsPlugin(options(origins=["https://a"]))
        request = FakeRequest(headers=[(b"Origin", b"https://a")])
        cors.filterRequest(request)
        response = PluginResponse(200, b"OK", [(b"Vary", b"Accept-Encoding")])
        cors.filterResponse(request, response)
        self.assertEqual(response.getRawHeaders(b"Vary"), [b"Accept-Encoding, Origin"])


class LimitTests(SynchronousTestCase):
    """
    The C{ws-limit} plugin on a clock.
    """

    def connection(self, clock):
        return WebSocketConnection(None, None, None, clock)

    def test_rate(self):
        """
        C{max_messages} at once, then C{max_messages / per} a second; each
        direction counts on its own with C{direction = "both"}.
        """
        clock = Clock()
        limits = limitPlugin(options(max_messages=2, per=10, direction="both"))
        connection = self.connection(clock)
        limits.opened(connection)
        send = lambda direction: limits.message(connection, Message(direction, False, b"x"))
        self.assertEqual([send("in"), send("in"), send("out")], [None, None, None])
        self.assertEqual(send("in"), Close(1008, "more than 2 messages in 10 s"))
        clock.advance(5)
        self.assertIsNone(send("in"))
        limits.closed(connection, 1000, "")
        self.assertEqual(connection.state, {})

    def test_directionNotCounted(self):
        """
        The default counts only the client's messages.
        """
        limits = limitPlugin(options(max_message_size=3))
        connection = self.connection(Clock())
        limits.opened(connection)
        self.assertIsNone(limits.message(connection, Message("out", True, b"xxxx")))
        self.assertEqual(
            limits.message(connection, Message("in", True, b"xxxx")),
            Close(1009, "message of 4 bytes over the limit of 3"),
        )


class AuditTests(SynchronousTestCase):
    """
    The C{ws-audit} plugin's lines.
    """

    def test_redacted(self):
        """
        Named fields are redacted at any depth, whatever their case.
        """
        value = {"a": 1, "Token": "t", "list": [{"token": {"deep": 1}}, 2]}
        self.assertEqual(
            redacted(value, {"token"}),
            {"a": 1, "Token": "[redacted]", "list": [{"token": "[redacted]"}, 2]},
        )

    def test_lines(self):
        """
        Text that is not JSON is cut at C{max_payload}; binary goes as its
        size, or base64.
        """
        log = MemoryAccessLog()
        audit = AuditLog("-", maxPayload=3, binary="base64", log=log)

        class View:
            clientAddress, user, uri = "10.0.0.1", "alice", b"/ws"

        connection = WebSocketConnection(View(), "chat", _Route(), Clock())
        audit.opened(connection)
        audit.message(connection, Message("in", False, b"abcdef"))
        audit.message(connection, Message("out", True, b"\x00\x01"))
        audit.closed(connection, 1001, "away")
        lines = [json.loads(line) for line in log.lines]
        self.assertEqual(lines[0]["time"], "1970-01-01T00:00:00.000Z")
        self.assertEqual(
            [(l["event"], l.get("text"), l.get("truncated"), l.get("base64")) for l in lines],
            [("open", None, None, None), ("message", "abc", True, None),
             ("message", None, None, "AAE="), ("close", None, None, None)],
        )
        self.assertEqual((lines[0]["user"], lines[0]["subprotocol"]), ("alice", "chat"))
        self.assertEqual((lines[3]["code"], lines[3]["reason"]), (1001, "away"))


class _Route:
    index = 3


class JWTTests(SynchronousTestCase):
    """
    The C{jwt} authenticator's checks.
    """

    def setUp(self):
        os.environ["PROXYWS_TEST_SECRET"] = "s3cret"
        self.addCleanup(os.environ.pop, "PROXYWS_TEST_SECRET")
        self.auth = jwtPlugin(options(
            secret_env="PROXYWS_TEST_SECRET", issuer="hub", cookie="session", leeway=5,
        ))

    def token(self, key="s3cret", **claims):
        payload = {"sub": "bob", "iss": "hub", "exp": int(time.time()) + 60}
        payload.update(claims)
        return jwt.encode(payload, key, algorithm="HS256").encode("ascii")

    def test_sources(self):
        """
        The token is taken from the bearer header, else the cookie.
        """
        request = FakeRequest(headers=[(b"Authorization", b"Bearer " + self.token())])
        self.assertEqual(self.auth.authenticate(request).user, "bob")
        request = FakeRequest(headers=[(b"Cookie", b"a=1; session=" + self.token())])
        outcome = self.auth.authenticate(request)
        self.assertIsInstance(outcome, Identity)
        self.assertEqual(outcome.claims["iss"], "hub")

    def test_refusals(self):
        """
        Bad tokens, a wrong issuer, expiry beyond the leeway, two
        C{Authorization} headers, another scheme: 401.
        """
        refused = [
            [(b"Authorization", b"Bearer " + self.token(key="other"))],
            [(b"Authorization", b"Bearer " + self.token(iss="evil"))],
            [(b"Authorization", b"Bearer " + self.token(exp=int(time.time()) - 30))],
            [(b"Authorization", b"Bearer " + self.token()), (b"Authorization", b"Bearer x")],
            [(b"Authorization", b"Basic YTpi")],
            [(b"Authorization", b"Bearer " + jwt.encode({"iss": "hub", "exp": int(time.time()) + 60}, "s3cret").encode())],
            [],
        ]
        for headers in refused:
            outcome = self.auth.authenticate(FakeRequest(headers=headers))
            self.assertIsInstance(outcome, Response, headers)
            self.assertEqual(outcome.code, 401)

    def test_leeway(self):
        """
        A token expired within the leeway is taken.
        """
        request = FakeRequest(headers=[(b"Authorization", b"Bearer " + self.token(exp=int(time.time()) - 2))])
        self.assertEqual(self.auth.authenticate(request).user, "bob")

    def test_publicKey(self):
        """
        With C{public_key}, RS256 tokens signed by its private key pass.
        """
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        directory = tempfile.mkdtemp()
        with open(os.path.join(directory, "pub.pem"), "wb") as f:
            f.write(key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ))
        auth = jwtPlugin(PluginOptions({"public_key": "pub.pem"}, directory))
        token = jwt.encode({"sub": "carol", "exp": int(time.time()) + 60}, key, algorithm="RS256")
        request = FakeRequest(headers=[(b"Authorization", b"Bearer " + token.encode())])
        self.assertEqual(auth.authenticate(request).user, "carol")


class ImportTests(SynchronousTestCase):
    """
    The plugin modules leave the reactor alone.
    """

    def test_noReactor(self):
        """
        Importing every plugin module (as loading the entry points does)
        does not import C{twisted.internet.reactor}.
        """
        code = (
            "import sys\n"
            "from proxyws.plugins import installedPlugins\n"
            "[entry.load() for entry in installedPlugins().values()]\n"
            "import proxyws.filters, proxyws.wsmessages\n"
            "print('twisted.internet.reactor' in sys.modules)\n"
        )
        env = dict(os.environ, PYTHONPATH=ROOT)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        self.assertEqual(out.stdout.strip(), "False", out.stderr)
