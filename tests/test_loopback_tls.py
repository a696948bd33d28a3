"""
End-to-end tests of TLS through the proxy, over real sockets on 127.0.0.1
with certificates made at test time (L{tests.certs}): certificates chosen by
SNI, TLS versions, HSTS, redirects to https, checked https and wss backends,
mutual TLS in both directions, websockets with TLS on both legs, and the two
example configs that use TLS (C{conf/shiny-https.toml},
C{conf/terminal-wss.toml}), adapted to a test machine.

proxyws runs in this process (L{tests.helpers.startProxy}).  Clients are
Python's C{ssl} module and the C{websockets} sync client, in threads;
backends are twisted.web sites and the Autobahn echo server of
L{tests.wsbackends} behind Twisted's TLS.  Every server and connection is
closed in cleanup.
"""

import json
import os
import shutil
import socket
import ssl
import tempfile
from functools import partial

import attr
from cryptography import x509
from OpenSSL import crypto
from twisted.internet import ssl as twistedSSL
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as websocketsConnect

from proxyws.accesslog import MemoryAccessLog
from proxyws.config import parseConfig
from proxyws.service import ProxyService
from proxyws.sockets import bindListeners

from . import certs
from .helpers import ROOT, CountingSite, freePort, rawRequest, startProxy
from .test_loopback_security import parseResponse, requestBytes
from .wsbackends import (
    WAIT,
    BackendRoot,
    EchoBackend,
    EchoFactory,
    EchoProtocol,
    _closeAll,
    reactor,
)

# Made once per module: the CA that signs the proxy's and the backends'
# certificates, a CA nobody trusts, and the CA of client certificates.
CA = certs.makeAuthority("proxyws loopback CA")

# A client context trusting CA (see certs.clientContext).
clientContext = partial(certs.clientContext, authority=CA)
STRANGER_CA = certs.makeAuthority("a CA nobody trusts")
CLIENT_CA = certs.makeAuthority("proxyws client CA")

# A client certificate the listener's client_ca verifies, and its subject
# as RFC 4514 writes it (the order is the reverse of the DER order).
ALICE = certs.makeCertificate(CLIENT_CA, ["alice"], client=True)
ALICE_SUBJECT = "CN=alice,O=proxyws tests"

# What a client sends to pass for someone else.
FORGED_SUBJECT = b"CN=mallory,O=forged"

HSTS = "max-age=31536000; includeSubDomains"


def toml(value):
    """
    @return: C{value} as a TOML basic string (JSON's escapes are TOML's).
    """
    return json.dumps(value)


def sanNames(certificate):
    """
    @param certificate: a C{cryptography} certificate.
    @return: the DNS names of its subjectAltName, in order.
    """
    extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return extension.value.get_values_for_type(x509.DNSName)


@attr.s(frozen=True)
class Exchange:
    """
    What a client saw of one request over TLS.

    @ivar error: the exception, when the handshake or the request failed.
    @ivar response: the L{tests.test_loopback_security.Response}.
    @ivar peer: the proxy's C{cryptography} certificate.
    @ivar version: the TLS version, as C{ssl} names it (C{"TLSv1.3"}).
    """

    error = attr.ib(default=None)
    response = attr.ib(default=None)
    peer = attr.ib(default=None)
    version = attr.ib(default=None)


def _exchange(port, context, serverName, request):
    """
    In a thread: shake hands, send C{request}, read until the proxy closes.

    @return: an L{Exchange}.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=serverName) as s:
                peer = x509.load_der_x509_certificate(s.getpeercert(True))
                version = s.version()
                s.sendall(request)
                received = []
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    received.append(chunk)
        except (ssl.SSLError, OSError) as e:
            return Exchange(error=e)
    if not received:
        return Exchange(error=EOFError("the connection closed without a response"))
    return Exchange(response=parseResponse(b"".join(received)), peer=peer, version=version)


def httpsGet(port, path, serverName=None, host=None, context=None, headers=()):
    """
    One request over a fresh TLS connection to the proxy, in a thread.

    @param serverName: the name sent by SNI (text), or L{None} for none.
    @param host: the C{Host} header (bytes); C{serverName} by default.
    @param headers: more C{(name, value)} pairs, as bytes.
    @return: a L{Deferred} firing with an L{Exchange}.
    """
    if host is None:
        host = (serverName or "127.0.0.1").encode("ascii")
    request = requestBytes(path, host, headers)
    return deferToThread(_exchange, port, context or clientContext(), serverName, request)


def websocketsOptions(**more):
    """
    Options of the C{websockets} sync client: short timeouts, no keep-alive
    pings.
    """
    options = dict(open_timeout=WAIT, close_timeout=WAIT, ping_interval=None)
    options.update(more)
    return options


def echoSession(url, context, serverName, closeCommand="close:4005:app reason"):
    """
    In a thread: open a websocket, have text and binary echoed, then ask the
    echo backend to close with C{closeCommand}.

    @return: C{(text echo, binary echo, (close code, reason) received)}.
    """
    options = websocketsOptions(ssl=context, server_hostname=serverName)
    with websocketsConnect(url, **options) as ws:
        ws.send("h\u00e9llo")
        text = ws.recv(timeout=WAIT)
        ws.send(b"\x00\xffbin\x80")
        binary = ws.recv(timeout=WAIT)
        ws.send(closeCommand)
        try:
            ws.recv(timeout=WAIT)
        except ConnectionClosed as e:
            closed = (e.rcvd.code, e.rcvd.reason) if e.rcvd is not None else None
        else:
            closed = "no close"
    return text, binary, closed


def refusedStatus(url, context, serverName):
    """
    In a thread: try to open a websocket that the proxy refuses.

    @return: the HTTP status of the refusal.
    """
    try:
        with websocketsConnect(url, **websocketsOptions(ssl=context, server_hostname=serverName)):
            pass
    except InvalidStatus as e:
        return e.response.status_code
    return 101


def serverOptions(pair, clientAuthority=None, chain=()):
    """
    Twisted TLS server options for a backend.

    @param pair: the backend's L{certs.Pair}.
    @param clientAuthority: when given, the L{certs.Pair} of the CA that
        must sign the client certificate every client has to present.
    """
    more = {}
    if clientAuthority is not None:
        more["trustRoot"] = twistedSSL.trustRootFromCertificates(
            [twistedSSL.Certificate(crypto.X509.from_cryptography(clientAuthority.certificate))]
        )
    return twistedSSL.CertificateOptions(
        privateKey=pair.key,
        certificate=pair.certificate,
        extraCertChain=list(chain),
        acceptableProtocols=[b"http/1.1"],
        **more,
    )


def serveTLS(testCase, factory, options):
    """
    Serve C{factory} behind TLS with C{options} on 127.0.0.1 until the test
    ends; cleanup waits for its connections to close (aborting those left
    after a while) so the reactor is clean.

    @return: the port number.
    """
    wrapper = TLSMemoryBIOFactory(options, False, factory)
    wrapper.noisy = False
    listening = reactor().listenTCP(0, wrapper, interface="127.0.0.1")
    testCase.addCleanup(_drain, wrapper)
    testCase.addCleanup(listening.stopListening)
    return listening.getHost().port


@inlineCallbacks
def _drain(wrapper, patience=2.0):
    """
    Wait until C{wrapper} has no connection left; abort those still open
    after C{patience} seconds, and wait for them to go.
    """
    for _ in range(int(patience / 0.01)):
        if not wrapper.protocols:
            return
        yield deferLater(reactor(), 0.01, lambda: None)
    for protocol in list(wrapper.protocols):
        protocol.transport.abortConnection()
    while wrapper.protocols:
        yield deferLater(reactor(), 0.01, lambda: None)


@attr.s
class Seen:
    """
    One request as a backend received it.

    @ivar uri: the request target.
    @ivar headers: the C{Headers}.
    @ivar serverName: the name the proxy sent by SNI (bytes), or L{None}.
    @ivar clientSubject: the subject of the proxy's client certificate, or
        L{None}.
    """

    uri = attr.ib()
    headers = attr.ib()
    serverName = attr.ib(default=None)
    clientSubject = attr.ib(default=None)


class Recorder(Resource):
    """
    A backend answering C{<name> <uri>} and recording each request, with
    what it saw of TLS when it is served over TLS.

    @ivar seen: the L{Seen} of each request.
    """

    isLeaf = True

    def __init__(self, name):
        Resource.__init__(self)
        self.name = name
        self.seen = []

    def render(self, request):
        """
        Record, then answer.
        """
        transport = request.channel.transport
        serverName = subject = None
        handle = getattr(transport, "getHandle", lambda: None)()
        if hasattr(handle, "get_servername"):
            serverName = handle.get_servername()
            peer = transport.getPeerCertificate()
            if peer is not None:
                subject = peer.to_cryptography().subject.rfc4514_string()
        self.seen.append(Seen(request.uri, request.requestHeaders, serverName, subject))
        request.setHeader(b"Content-Type", b"text/plain")
        return self.name + b" " + request.uri


class TLSEchoProtocol(EchoProtocol):
    """
    The echo protocol, noting the name each client asked for by SNI.
    """

    def onConnect(self, request):
        """
        Note the server name, then go on as the echo protocol does.
        """
        self.factory.serverNames.append(self.transport.getHandle().get_servername())
        return EchoProtocol.onConnect(self, request)


class TLSEchoFactory(EchoFactory):
    """
    Builds L{TLSEchoProtocol}s.

    @ivar serverNames: the SNI name of each handshake (bytes or L{None}).
    """

    protocol = TLSEchoProtocol

    def __init__(self):
        EchoFactory.__init__(self)
        self.serverNames = []


class TLSEchoBackend(EchoBackend):
    """
    The echo backend of L{tests.wsbackends} (websockets and plain HTTP)
    served over TLS.
    """

    def __init__(self, testCase, pair, chain=()):
        self.factory = TLSEchoFactory()
        self.site = CountingSite(BackendRoot(self.factory))
        self.site.log = lambda request: None
        # A channel taken over by the websocket would keep its timer.
        self.site.timeOut = None
        self.port = serveTLS(testCase, self.site, serverOptions(pair, chain=chain))
        testCase.addCleanup(lambda: _closeAll(self.factory.protocols))


def startProxyIn(testCase, configText, directory, filename):
    """
    Start proxyws on C{configText} as if it were the file C{filename} in
    C{directory}, so that the relative file names in it (certificates)
    resolve there, as the example configs expect.

    @return: the L{ProxyService}.
    """
    config = parseConfig(configText, os.path.join(directory, filename))
    service = ProxyService(config, bindListeners(config), reactor(), accessLog=MemoryAccessLog())
    service.startService()
    testCase.addCleanup(service.stopService)
    return service


def portOf(service, index=0):
    """
    @return: the port number of the C{index}th listener of C{service}.
    """
    return service.ports[index].getHost().port


class TLSTestCase(TestCase):
    """
    A directory for certificate files per test, and shortcuts to make
    certificates, backends and configs.
    """

    timeout = 15

    def setUp(self):
        """
        Make the directory.
        """
        self.directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.directory, True)

    def write(self, stem, pair, chain=()):
        """
        Write C{stem.crt} and C{stem.key} into the test's directory.

        @return: C{(cert path, key path)}.
        """
        return certs.writePair(self.directory, stem, pair, chain)

    def writeAuthority(self, stem, authority):
        """
        Write a CA certificate as C{stem.pem}.

        @return: its path.
        """
        pem = certs.certificatePem(authority.certificate)
        return certs.writeFile(self.directory, stem + ".pem", pem)

    def tlsTable(self, stem, names, issuer=CA, **more):
        """
        Make a certificate for C{names} and write it.

        @param more: more keys of the table, as TOML text by name.
        @return: the text of a TOML inline table C{{ cert = ..., key = ... }}.
        """
        cert, key = self.write(stem, certs.makeCertificate(issuer, names))
        keys = ["cert = %s" % toml(cert), "key = %s" % toml(key)]
        keys.extend("%s = %s" % item for item in more.items())
        return "{ %s }" % ", ".join(keys)

    def httpBackend(self, name):
        """
        Start a plain HTTP L{Recorder} backend.

        @return: C{(recorder, port)}.
        """
        recorder = Recorder(name)
        site = CountingSite(recorder)
        site.log = lambda request: None
        listening = reactor().listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        return recorder, listening.getHost().port

    def httpsBackend(self, name, pair, clientAuthority=None):
        """
        Start a L{Recorder} backend over TLS with C{pair}'s certificate.

        @param clientAuthority: require client certificates from this CA.
        @return: C{(recorder, port)}.
        """
        recorder = Recorder(name)
        site = CountingSite(recorder)
        site.log = lambda request: None
        return recorder, serveTLS(self, site, serverOptions(pair, clientAuthority))

    def captureLog(self):
        """
        Collect the operational log events until the test ends.

        @return: the list they go to.
        """
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        return events

    def assertWorks(self, exchange, status=200):
        """
        The exchange got an HTTP response with C{status}.

        @return: the response.
        """
        self.assertIsNone(exchange.error, exchange.error)
        self.assertEqual(exchange.response.status, status, exchange.response.raw)
        return exchange.response

    def assertHandshakeRefused(self, exchange):
        """
        The exchange failed at the TLS level: no HTTP response came.
        """
        self.assertIsNone(exchange.response)
        self.assertIsInstance(exchange.error, (ssl.SSLError, ConnectionResetError, EOFError))


class ServerNameTests(TLSTestCase):
    """
    SNI: the listener's certificate by default, a C{[[host]]}'s certificate
    for its names, and the request routed to that host's backend.
    """

    @inlineCallbacks
    def test_certificateAndBackendByServerName(self):
        """
        A client asking for a host's name (exactly or under its wildcard)
        gets that host's certificate and reaches that host's backend; an
        unknown name, or none, gets the listener's certificate and the routes
        outside any host.
        """
        backends = {}
        for name in (b"default", b"a", b"b"):
            backends[name] = self.httpBackend(name)
        config = """
[[listen]]
address = "127.0.0.1"
port = 0
tls = %s

[[route]]
path = "/"
backend = "http://127.0.0.1:%d/"

[[host]]
names = ["a.test"]
tls = %s
  [[host.route]]
  path = "/"
  backend = "http://127.0.0.1:%d/"

[[host]]
names = ["b.test", "*.b.test"]
tls = %s
  [[host.route]]
  path = "/"
  backend = "http://127.0.0.1:%d/"
""" % (
            self.tlsTable("proxy", ["proxy.test"]),
            backends[b"default"][1],
            self.tlsTable("a", ["a.test"]),
            backends[b"a"][1],
            self.tlsTable("b", ["b.test", "*.b.test"]),
            backends[b"b"][1],
        )
        _, port, _ = startProxy(self, config)
        # server name sent -> names of the certificate presented, backend
        cases = [
            ("a.test", ["a.test"], b"a"),
            ("b.test", ["b.test", "*.b.test"], b"b"),
            ("www.b.test", ["b.test", "*.b.test"], b"b"),
            ("unknown.test", ["proxy.test"], b"default"),
            (None, ["proxy.test"], b"default"),
        ]
        seen = []
        for serverName, _, _ in cases:
            exchange = yield httpsGet(port, b"/where?q=1", serverName)
            response = self.assertWorks(exchange)
            seen.append((serverName, sanNames(exchange.peer), response.body.split(b" ")[0]))
        self.assertEqual(seen, cases)
        for name in (b"a", b"b", b"default"):
            recorder = backends[name][0]
            self.assertTrue(recorder.seen, name)
            for request in recorder.seen:
                self.assertEqual(request.uri, b"/where?q=1")
                self.assertEqual(
                    request.headers.getRawHeaders(b"X-Forwarded-Proto"), [b"https"]
                )


class VersionTests(TLSTestCase):
    """
    TLS 1.2 and 1.3 are accepted, 1.1 refused; C{min_version = "1.3"}
    refuses 1.2.
    """

    def startTLSProxy(self, **tls):
        """
        A TLS listener in front of a L{Recorder}, with more C{tls} keys.

        @return: the proxy's port.
        """
        _, backendPort = self.httpBackend(b"backend")
        config = '[[listen]]\naddress = "127.0.0.1"\nport = 0\ntls = %s\n' % self.tlsTable(
            "proxy", ["proxy.test"], **tls
        )
        config += '[[route]]\npath = "/"\nbackend = "http://127.0.0.1:%d/"\n' % backendPort
        return startProxy(self, config)[1]

    @inlineCallbacks
    def test_defaultVersions(self):
        """
        By default a TLS 1.2 client and a TLS 1.3 client are served; a
        client that offers at most TLS 1.1 is refused with a protocol version
        alert.
        """
        port = self.startTLSProxy()
        for maximum, name in [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (None, "TLSv1.3")]:
            context = clientContext(maximum=maximum)
            exchange = yield httpsGet(port, b"/", "proxy.test", context=context)
            self.assertWorks(exchange)
            self.assertEqual(exchange.version, name)
        old = clientContext(maximum=ssl.TLSVersion.TLSv1_1, minimum=ssl.TLSVersion.TLSv1)
        exchange = yield httpsGet(port, b"/", "proxy.test", context=old)
        self.assertHandshakeRefused(exchange)
        self.assertEqual(exchange.error.reason, "TLSV1_ALERT_PROTOCOL_VERSION")

    @inlineCallbacks
    def test_minimumVersion13(self):
        """
        With C{min_version = "1.3"}, a TLS 1.2 client is refused and a TLS
        1.3 client served.
        """
        port = self.startTLSProxy(min_version='"1.3"')
        twelve = clientContext(maximum=ssl.TLSVersion.TLSv1_2)
        exchange = yield httpsGet(port, b"/", "proxy.test", context=twelve)
        self.assertHandshakeRefused(exchange)
        self.assertEqual(exchange.error.reason, "TLSV1_ALERT_PROTOCOL_VERSION")
        exchange = yield httpsGet(port, b"/", "proxy.test")
        self.assertWorks(exchange)
        self.assertEqual(exchange.version, "TLSv1.3")


class StrictTransportSecurityTests(TLSTestCase):
    """
    C{hsts} on a TLS listener.
    """

    @inlineCallbacks
    def test_proxiedAndErrorResponses(self):
        """
        C{Strict-Transport-Security} is sent, with the configured value,
        on a proxied response and on the proxy's own 404 page.
        """
        _, backendPort = self.httpBackend(b"backend")
        config = """
[[listen]]
address = "127.0.0.1"
port = 0
tls = %s
hsts = %s

[[route]]
path = "/app/"
backend = "http://127.0.0.1:%d/app/"
""" % (self.tlsTable("proxy", ["proxy.test"]), toml(HSTS), backendPort)
        _, port, _ = startProxy(self, config)
        proxied = self.assertWorks((yield httpsGet(port, b"/app/x", "proxy.test")))
        self.assertEqual(proxied.body, b"backend /app/x")
        missing = self.assertWorks((yield httpsGet(port, b"/elsewhere", "proxy.test")), 404)
        for response in (proxied, missing):
            self.assertEqual(response.header(b"Strict-Transport-Security"), [HSTS.encode()])


class RedirectToTLSTests(TLSTestCase):
    """
    A port-80-style listener that only redirects, beside the TLS listener,
    in one config.
    """

    @inlineCallbacks
    def test_redirectThenFollow(self):
        """
        A plain request gets a 301 to the https URL with the same host, path
        and query on the TLS listener's port; following it over TLS reaches
        the backend with that path and query.
        """
        recorder, backendPort = self.httpBackend(b"backend")
        tlsPort = freePort()
        config = """
[[listen]]
address = "127.0.0.1"
port = 0
redirect_https = { port = %d }

[[listen]]
address = "127.0.0.1"
port = %d
tls = %s

[[route]]
path = "/"
backend = "http://127.0.0.1:%d/"
""" % (tlsPort, tlsPort, self.tlsTable("app", ["app.test"]), backendPort)
        service, plainPort, _ = startProxy(self, config)
        raw = yield rawRequest(plainPort, requestBytes(b"/some/path?x=1&y=two", b"app.test"))
        redirect = parseResponse(raw)
        location = b"https://app.test:%d/some/path?x=1&y=two" % tlsPort
        self.assertEqual((redirect.status, redirect.header(b"Location")), (301, [location]))
        self.assertEqual(recorder.seen, [])
        # Follow it: connect where the Location points, by name.
        host, _, target = location[len(b"https://") :].partition(b"/")
        name, _, port = host.decode().partition(":")
        followed = yield httpsGet(int(port), b"/" + target, name, host=host)
        self.assertEqual(self.assertWorks(followed).body, b"backend /some/path?x=1&y=two")
        self.assertEqual(sanNames(followed.peer), ["app.test"])
        self.assertEqual([seen.uri for seen in recorder.seen], [b"/some/path?x=1&y=two"])


class BackendVerificationTests(TLSTestCase):
    """
    https:// backends are checked: the CA, the name, C{server_name},
    C{verify = false}.
    """

    def startRoutes(self, routes):
        """
        A plain listener with a route C{/<n>/} per entry of C{routes}.

        @param routes: C{(backend port, backend_tls text or None)}.
        @return: the proxy's port.
        """
        config = '[[listen]]\naddress = "127.0.0.1"\nport = 0\n'
        for n, (backendPort, backendTLS) in enumerate(routes):
            config += '[[route]]\npath = "/%d/"\nbackend = "https://127.0.0.1:%d/%d/"\n' % (
                n,
                backendPort,
                n,
            )
            if backendTLS is not None:
                config += "backend_tls = %s\n" % backendTLS
        return startProxy(self, config)[1]

    def get(self, port, path):
        """
        A plain request to the proxy.

        @return: a L{Deferred} firing with the response.
        """
        return rawRequest(port, requestBytes(path, b"proxy.test")).addCallback(parseResponse)

    @inlineCallbacks
    def test_wrongName(self):
        """
        A backend whose certificate (from the trusted CA) names another host
        gets 502; the body says the TLS handshake failed, and the operational
        log line names the backend and the name check that failed.
        """
        events = self.captureLog()
        ca = self.writeAuthority("ca", CA)
        recorder, backendPort = self.httpsBackend(
            b"backend", certs.makeCertificate(CA, ["other.test"])
        )
        port = self.startRoutes([(backendPort, "{ ca = %s }" % toml(ca))])
        response = yield self.get(port, b"/0/x")
        self.assertEqual(response.status, 502, response.raw)
        self.assertIn(b"TLS", response.body)
        self.assertEqual(recorder.seen, [])
        url = "https://127.0.0.1:%d/0/" % backendPort
        lines = [e for e in events if e.get("status") == 502 and e.get("backend") == url]
        self.assertEqual(len(lines), 1, events)
        # service-identity's verdict: the certificate is not for 127.0.0.1.
        detail = str(lines[0]["detail"])
        self.assertIn("VerificationError", detail)
        self.assertIn("IPAddressMismatch", detail)
        self.assertIn("127.0.0.1", detail)

    @inlineCallbacks
    def test_unknownAuthority(self):
        """
        A backend whose certificate comes from a CA that is not trusted gets
        502, whether the route trusts the system's CAs or a CA file.
        """
        ca = self.writeAuthority("ca", CA)
        stranger = certs.makeCertificate(STRANGER_CA, ["127.0.0.1"])
        recorder, backendPort = self.httpsBackend(b"backend", stranger)
        port = self.startRoutes([(backendPort, None), (backendPort, "{ ca = %s }" % toml(ca))])
        for path in (b"/0/x", b"/1/x"):
            response = yield self.get(port, path)
            self.assertEqual(response.status, 502, response.raw)
            self.assertIn(b"TLS", response.body)
        self.assertEqual(recorder.seen, [])

    @inlineCallbacks
    def test_verified(self):
        """
        With the CA file and a certificate for the backend's address, the
        backend is reached; no name is sent by SNI to an IP address.
        """
        ca = self.writeAuthority("ca", CA)
        recorder, backendPort = self.httpsBackend(
            b"backend", certs.makeCertificate(CA, ["127.0.0.1"])
        )
        port = self.startRoutes([(backendPort, "{ ca = %s }" % toml(ca))])
        response = yield self.get(port, b"/0/x?y=1")
        self.assertEqual((response.status, response.body), (200, b"backend /0/x?y=1"))
        self.assertEqual([(s.uri, s.serverName) for s in recorder.seen], [(b"/0/x?y=1", None)])

    @inlineCallbacks
    def test_serverName(self):
        """
        C{server_name}: the backend's certificate names another host than
        the URL; the name is checked instead, and sent by SNI.
        """
        ca = self.writeAuthority("ca", CA)
        recorder, backendPort = self.httpsBackend(
            b"backend", certs.makeCertificate(CA, ["backend.internal"])
        )
        port = self.startRoutes(
            [
                (backendPort, '{ ca = %s, server_name = "backend.internal" }' % toml(ca)),
                (backendPort, "{ ca = %s }" % toml(ca)),
            ]
        )
        response = yield self.get(port, b"/0/x")
        self.assertEqual((response.status, response.body), (200, b"backend /0/x"))
        self.assertEqual([s.serverName for s in recorder.seen], [b"backend.internal"])
        # The same backend without server_name: the address does not match.
        response = yield self.get(port, b"/1/x")
        self.assertEqual(response.status, 502, response.raw)

    @inlineCallbacks
    def test_verifyFalse(self):
        """
        C{verify = false} reaches a backend with a self-signed certificate
        for another name, and the start-up warns that it is not checked.
        """
        events = self.captureLog()
        selfSigned = certs.makeCertificate(None, ["self.test"])
        recorder, backendPort = self.httpsBackend(b"backend", selfSigned)
        port = self.startRoutes([(backendPort, "{ verify = false }")])
        response = yield self.get(port, b"/0/x")
        self.assertEqual((response.status, response.body), (200, b"backend /0/x"))
        warned = [e for e in events if "NOT checked" in e.get("log_format", "")]
        self.assertEqual([e["url"] for e in warned], ["https://127.0.0.1:%d/0/" % backendPort])


class ClientCertificateTests(TLSTestCase):
    """
    Mutual TLS between clients and the proxy: C{client_cert}, C{client_ca}
    and C{client_subject_header}.
    """

    def startMutualProxy(self, mode="required"):
        """
        A TLS listener asking for client certificates from L{CLIENT_CA},
        passing the subject on as C{X-Client-Subject}, in front of a
        L{Recorder}.

        @return: the proxy's port.
        """
        self.recorder, backendPort = self.httpBackend(b"backend")
        clientCA = self.writeAuthority("clients", CLIENT_CA)
        table = self.tlsTable(
            "proxy",
            ["proxy.test"],
            client_ca=toml(clientCA),
            client_cert=toml(mode),
            client_subject_header='"X-Client-Subject"',
        )
        config = '[[listen]]\naddress = "127.0.0.1"\nport = 0\ntls = %s\n' % table
        config += '[[route]]\npath = "/"\nbackend = "http://127.0.0.1:%d/"\n' % backendPort
        return startProxy(self, config)[1]

    def clientWith(self, pair):
        """
        @return: a client context presenting C{pair}.
        """
        return clientContext(certificate=self.write("client", pair))

    @inlineCallbacks
    def test_requiredWithout(self):
        """
        C{client_cert = "required"}: a client without a certificate, or with
        one from another CA, fails the handshake, and nothing reaches the
        backend.
        """
        port = self.startMutualProxy()
        exchange = yield httpsGet(port, b"/", "proxy.test")
        self.assertHandshakeRefused(exchange)
        stranger = certs.makeCertificate(STRANGER_CA, ["mallory"], client=True)
        exchange = yield httpsGet(port, b"/", "proxy.test", context=self.clientWith(stranger))
        self.assertHandshakeRefused(exchange)
        self.assertEqual(self.recorder.seen, [])

    @inlineCallbacks
    def test_requiredWithSubject(self):
        """
        A client with a certificate from C{client_ca} is served, and the
        backend receives the verified subject in RFC 4514 form; the
        C{X-Client-Subject} headers the client sent itself are not passed
        on, whatever their case.
        """
        port = self.startMutualProxy()
        exchange = yield httpsGet(
            port,
            b"/",
            "proxy.test",
            context=self.clientWith(ALICE),
            headers=[(b"X-Client-Subject", FORGED_SUBJECT), (b"x-client-subject", b"CN=eve")],
        )
        self.assertEqual(self.assertWorks(exchange).body, b"backend /")
        [seen] = self.recorder.seen
        self.assertEqual(
            seen.headers.getRawHeaders(b"X-Client-Subject"), [ALICE_SUBJECT.encode()]
        )

    @inlineCallbacks
    def test_optionalWithoutCertificate(self):
        """
        C{client_cert = "optional"}: a client without a certificate is
        served, and a subject it sends itself does not reach the backend.
        """
        port = self.startMutualProxy("optional")
        exchange = yield httpsGet(
            port, b"/", "proxy.test", headers=[(b"X-Client-Subject", FORGED_SUBJECT)]
        )
        self.assertWorks(exchange)
        [seen] = self.recorder.seen
        self.assertIsNone(seen.headers.getRawHeaders(b"X-Client-Subject"))


class BackendClientCertificateTests(TLSTestCase):
    """
    Mutual TLS between the proxy and a backend: C{backend_tls.cert} and
    C{key}.
    """

    @inlineCallbacks
    def test_backendRequiresCertificate(self):
        """
        A backend that requires a client certificate answers the route that
        presents one (and sees its subject), and the route without one gets
        502.
        """
        ca = self.writeAuthority("ca", CA)
        cert, key = self.write(
            "proxy-client", certs.makeCertificate(CLIENT_CA, ["proxyws-proxy"], client=True)
        )
        recorder, backendPort = self.httpsBackend(
            b"backend", certs.makeCertificate(CA, ["127.0.0.1"]), clientAuthority=CLIENT_CA
        )
        config = """
[[listen]]
address = "127.0.0.1"
port = 0

[[route]]
path = "/with/"
backend = "https://127.0.0.1:%(port)d/with/"
backend_tls = { ca = %(ca)s, cert = %(cert)s, key = %(key)s }

[[route]]
path = "/without/"
backend = "https://127.0.0.1:%(port)d/without/"
backend_tls = { ca = %(ca)s }
""" % dict(port=backendPort, ca=toml(ca), cert=toml(cert), key=toml(key))
        _, port, _ = startProxy(self, config)
        raw = yield rawRequest(port, requestBytes(b"/with/x", b"proxy.test"))
        response = parseResponse(raw)
        self.assertEqual((response.status, response.body), (200, b"backend /with/x"))
        self.assertEqual(
            [s.clientSubject for s in recorder.seen], ["CN=proxyws-proxy,O=proxyws tests"]
        )
        raw = yield rawRequest(port, requestBytes(b"/without/x", b"proxy.test"))
        response = parseResponse(raw)
        self.assertEqual(response.status, 502, raw)
        self.assertEqual(len(recorder.seen), 1)


class WebSocketOverTLSTests(TLSTestCase):
    """
    Websockets with TLS on both legs: a wss client, a TLS listener, a wss
    backend checked against C{backend_tls.ca}.
    """

    def setUp(self):
        """
        Start the echo backend over TLS and the proxy.
        """
        TLSTestCase.setUp(self)
        self.backend = TLSEchoBackend(self, certs.makeCertificate(CA, ["127.0.0.1"]))
        ca = self.writeAuthority("ca", CA)
        # Routes are tried in order: the two that must fail come first.
        config = """
[[listen]]
address = "127.0.0.1"
port = 0
tls = %(tls)s

[[route]]
path = "/stranger/"
backend = "wss://127.0.0.1:%(port)d/"

[[route]]
path = "/othername/"
backend = "wss://127.0.0.1:%(port)d/"
backend_tls = { ca = %(ca)s, server_name = "other.test" }

[[route]]
path = "/"
backend = "wss://127.0.0.1:%(port)d/"
backend_tls = { ca = %(ca)s }
""" % dict(tls=self.tlsTable("proxy", ["proxy.test"]), port=self.backend.port, ca=toml(ca))
        _, self.port, _ = startProxy(self, config)

    def url(self, path):
        """
        @return: the C{wss://} URL of C{path} on the proxy.
        """
        return "wss://127.0.0.1:%d%s" % (self.port, path)

    def context(self):
        """
        @return: a client context checking the proxy's name as well.
        """
        context = clientContext()
        context.check_hostname = True
        return context

    @inlineCallbacks
    def test_echoAndBackendClose(self):
        """
        Text comes back as text and binary as binary, and the close code and
        reason the backend sends reach the client unchanged.
        """
        text, binary, closed = yield deferToThread(
            echoSession, self.url("/echo?x=1"), self.context(), "proxy.test"
        )
        self.assertEqual((text, binary), ("h\u00e9llo", b"\x00\xffbin\x80"))
        self.assertEqual(closed, (4005, "app reason"))
        backend = self.backend.last()
        self.assertEqual(
            backend.received[:2],
            [("h\u00e9llo".encode("utf-8"), False), (b"\x00\xffbin\x80", True)],
        )
        self.assertEqual(self.backend.handshakes[-1].uri, "/echo?x=1")
        # The backend's leg is TLS, and no name is sent to an IP address.
        self.assertEqual(self.backend.factory.serverNames, [None])
        yield backend.lost.wait()

    @inlineCallbacks
    def test_clientClose(self):
        """
        The close code and reason the client sends reach the backend.
        """

        def session(url, context):
            options = websocketsOptions(ssl=context, server_hostname="proxy.test")
            with websocketsConnect(url, **options) as ws:
                ws.send("one")
                ws.recv(timeout=WAIT)
                ws.close(4000, "custom")

        yield deferToThread(session, self.url("/echo"), self.context())
        backend = self.backend.last()
        closed = yield backend.closed.wait()
        self.assertEqual(closed, (4000, "custom"))
        yield backend.lost.wait()

    @inlineCallbacks
    def test_backendRefused(self):
        """
        The same wss backend on a route that trusts only the system's CAs,
        and on one that expects another name: the upgrade is answered 502
        and no websocket reaches the backend.
        """
        for path in ("/stranger/echo", "/othername/echo"):
            status = yield deferToThread(
                refusedStatus, self.url(path), self.context(), "proxy.test"
            )
            self.assertEqual(status, 502, path)
        self.assertEqual(self.backend.handshakes, [])


def adapt(text, replacements):
    """
    Change an example config for the test machine, leaving its comment
    lines alone.

    @param replacements: C{(old, new, count)}: C{old} must occur exactly
        C{count} times outside comment lines, so that a changed example
        fails the test rather than letting it test something else.
    @return: the changed text.
    """
    lines = text.splitlines(True)
    isComment = lambda line: line.lstrip().startswith("#")
    for old, new, count in replacements:
        found = sum(line.count(old) for line in lines if not isComment(line))
        if found != count:
            raise AssertionError("%r occurs %d times in the example, not %d" % (old, found, count))
        lines = [line if isComment(line) else line.replace(old, new) for line in lines]
    return "".join(lines)


def example(name):
    """
    @return: the text of C{conf/<name>}.
    """
    with open(os.path.join(ROOT, "conf", name), encoding="utf-8") as f:
        return f.read()


class ShinyExampleTests(TLSTestCase):
    """
    C{conf/shiny-https.toml}, run end to end.

    The config is loaded as the file C{shiny-https.toml} in the test's
    directory, where the test writes C{shiny.example.com.crt} and C{.key}
    (made by the test CA for C{shiny.example.com}), so its relative
    certificate paths stay as written.  Lines changed:

      - C{address = "0.0.0.0"} (both listeners) -> C{"127.0.0.1"}: a test
        must not listen on every interface.
      - C{port = 80} and C{port = 443} -> free ports: the real ones need
        root and may be in use.
      - C{redirect_https = true} -> C{redirect_https = { port = <the TLS
        port> }} (the form the example's own comment gives), so that the
        redirect points at the test's TLS listener instead of port 443.
      - C{ws://127.0.0.1:3838/$1} -> the port of one echo backend, and
        C{http://127.0.0.1:3838/} -> the port of another: the example sends
        both to one Shiny server; two backends let the test tell which
        route carried a request.

    Unchanged: C{access_log} (the test gives the service an in-memory access
    log, so the file is never opened), the certificate names, C{min_version},
    C{hsts}, the host, its allow-list and both routes.
    """

    def setUp(self):
        """
        Start the two backends and the proxy on the adapted example.
        """
        TLSTestCase.setUp(self)
        self.write("shiny.example.com", certs.makeCertificate(CA, ["shiny.example.com"]))
        self.sockjs = EchoBackend(self)
        self.app = EchoBackend(self)
        self.plainPort, self.tlsPort = freePort(), freePort()
        text = adapt(
            example("shiny-https.toml"),
            [
                ('address = "0.0.0.0"', 'address = "127.0.0.1"', 2),
                ("port = 80\n", "port = %d\n" % self.plainPort, 1),
                ("port = 443\n", "port = %d\n" % self.tlsPort, 1),
                ("redirect_https = true", "redirect_https = { port = %d }" % self.tlsPort, 1),
                ("ws://127.0.0.1:3838/$1", "ws://127.0.0.1:%d/$1" % self.sockjs.port, 1),
                ("http://127.0.0.1:3838/\"", 'http://127.0.0.1:%d/"' % self.app.port, 1),
            ],
        )
        startProxyIn(self, text, self.directory, "shiny-https.toml")

    @inlineCallbacks
    def test_redirectThenPage(self):
        """
        A plain request is sent to https with its path and query; following
        the redirect, and a plain C{GET /}, reach the app over https with
        HSTS, under the certificate for C{shiny.example.com}.
        """
        raw = yield rawRequest(
            self.plainPort, requestBytes(b"/app/page?x=1", b"shiny.example.com")
        )
        redirect = parseResponse(raw)
        location = b"https://shiny.example.com:%d/app/page?x=1" % self.tlsPort
        self.assertEqual((redirect.status, redirect.header(b"Location")), (301, [location]))
        host = b"shiny.example.com:%d" % self.tlsPort
        for path in (b"/app/page?x=1", b"/"):
            exchange = yield httpsGet(self.tlsPort, path, "shiny.example.com", host=host)
            response = self.assertWorks(exchange)
            self.assertEqual(response.body, b"plain http GET " + path)
            self.assertEqual(response.header(b"Strict-Transport-Security"), [HSTS.encode()])
            self.assertEqual(sanNames(exchange.peer), ["shiny.example.com"])

    @inlineCallbacks
    def test_sockJSWebSocket(self):
        """
        A wss SockJS websocket path goes through the regex route to the ws
        backend, with the path the route's C{$1} makes of it.
        """
        context = clientContext()
        context.check_hostname = True
        path = "/app/__sockjs__/123/abc/websocket"
        url = "wss://127.0.0.1:%d%s" % (self.tlsPort, path)
        text, binary, closed = yield deferToThread(
            echoSession, url, context, "shiny.example.com", "close:1000:bye"
        )
        self.assertEqual((text, binary, closed), ("h\u00e9llo", b"\x00\xffbin\x80", (1000, "bye")))
        self.assertEqual([h.uri for h in self.sockjs.handshakes], [path])
        self.assertEqual(self.app.handshakes, [])
        yield self.sockjs.last().lost.wait()


class TerminalExampleTests(TLSTestCase):
    """
    C{conf/terminal-wss.toml}, run end to end.

    The config is loaded as the file C{terminal-wss.toml} in the test's
    directory, where the test writes C{proxy.crt}/C{proxy.key} (for
    C{terminal.example.com}) and C{internal-ca.pem}, a CA of its own that
    signs the backend's certificate for C{term.internal}.  Lines changed:

      - C{address = "0.0.0.0"} -> C{"127.0.0.1"} and C{port = 443} ->
        C{0}: no listening on every interface, no root.
      - C{backend = "wss://term.internal:8443/"} ->
        C{"wss://127.0.0.1:<port>/"}: C{term.internal} does not resolve
        here.  The backend's certificate still names C{term.internal}, and
        the example's C{server_name = "term.internal"} is what makes it
        pass, so this change keeps what the line is about.
      - C{allow = ["10.0.0.0/8"]} -> C{["127.0.0.0/8"]} in
        L{test_allowedWebSocket} only: the test client comes from 127.0.0.1.
        L{test_refusedOutside} keeps the example's allow-list.

    Unchanged: C{access_log} (an in-memory access log is used), the
    certificate file names, C{order}/C{deny}, the ping settings (30 s is
    longer than the test) and C{backend_tls}.
    """

    def startTerminal(self, allow=None):
        """
        Start the backend and the proxy on the adapted example.

        @param allow: the replacement of the allow-list, or L{None} to keep
            the example's.
        """
        internalCA = certs.makeAuthority("internal CA")
        certs.writeFile(
            self.directory, "internal-ca.pem", certs.certificatePem(internalCA.certificate)
        )
        self.write("proxy", certs.makeCertificate(CA, ["terminal.example.com"]))
        self.backend = TLSEchoBackend(self, certs.makeCertificate(internalCA, ["term.internal"]))
        replacements = [
            ('address = "0.0.0.0"', 'address = "127.0.0.1"', 1),
            ("port = 443\n", "port = 0\n", 1),
            ("wss://term.internal:8443/", "wss://127.0.0.1:%d/" % self.backend.port, 1),
        ]
        if allow is not None:
            replacements.append(('allow = ["10.0.0.0/8"]', "allow = %s" % allow, 1))
        text = adapt(example("terminal-wss.toml"), replacements)
        service = startProxyIn(self, text, self.directory, "terminal-wss.toml")
        self.port = portOf(service)

    def context(self):
        """
        @return: a client context checking the proxy's name.
        """
        context = clientContext()
        context.check_hostname = True
        return context

    @inlineCallbacks
    def test_allowedWebSocket(self):
        """
        From an allowed address, a wss websocket to C{/term/} reaches the
        wss backend at C{/}, which was asked for C{term.internal} by SNI.
        """
        self.startTerminal(allow='["127.0.0.0/8"]')
        url = "wss://127.0.0.1:%d/term/" % self.port
        text, binary, closed = yield deferToThread(
            echoSession, url, self.context(), "terminal.example.com", "close:1000:logout"
        )
        self.assertEqual(
            (text, binary, closed), ("h\u00e9llo", b"\x00\xffbin\x80", (1000, "logout"))
        )
        backend = self.backend.last()
        self.assertEqual(self.backend.handshakes[-1].uri, "/")
        self.assertEqual(self.backend.factory.serverNames, [b"term.internal"])
        yield backend.lost.wait()

    @inlineCallbacks
    def test_refusedOutside(self):
        """
        With the example's C{allow = ["10.0.0.0/8"]}, 127.0.0.1 gets 403,
        for a plain request and for a websocket, and the backend is never
        contacted.
        """
        self.startTerminal()
        exchange = yield httpsGet(self.port, b"/term/", "terminal.example.com")
        self.assertWorks(exchange, 403)
        url = "wss://127.0.0.1:%d/term/" % self.port
        status = yield deferToThread(refusedStatus, url, self.context(), "terminal.example.com")
        self.assertEqual(status, 403)
        self.assertEqual(self.backend.site.connections, 0)
