"""
End-to-end tests of a reload in place (L{proxyws.service.ProxyService.reload}):
proxyws in this process on a config file the tests rewrite, real backends
(the Autobahn echo server, a twisted.web site) and real clients over
127.0.0.1.
"""

import os
import shutil
import socket
import ssl
import tempfile

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource

from proxyws.accesslog import MemoryAccessLog
from proxyws.config import loadConfig
from proxyws.service import ProxyService
from proxyws.sockets import bindListeners

from . import certs
from .helpers import freePort, rawRequest, startBackend
from .wsbackends import EchoBackend, connectAutobahn

CA = certs.makeAuthority("proxyws reload CA")


class Named(Resource):
    """
    Answers every request with its name.
    """

    isLeaf = True

    def __init__(self, name):
        Resource.__init__(self)
        self._name = name

    def render(self, request):
        """
        @return: the name.
        """
        return self._name


def get(port, path, host=b"127.0.0.1"):
    """
    One GET on a fresh connection.

    @return: a L{Deferred} firing with C{(status, body)}.
    """
    data = b"GET " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"

    def parse(raw):
        head, _, body = raw.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body

    return rawRequest(port, data).addCallback(parse)


class ReloadTestCase(TestCase):
    """
    A proxy started from a config file that a test rewrites and reloads.
    """

    timeout = 30

    def startFrom(self, text, port=0):
        """
        Write C{text} (with C{{port}} filled) to a file and start proxyws on
        it.

        @return: the proxy's port.
        """
        from twisted.internet import reactor

        self.directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.path = os.path.join(self.directory, "proxy.toml")
        self.write(text)
        config = loadConfig(self.path)
        self.log = MemoryAccessLog()
        self.service = ProxyService(config, bindListeners(config), reactor, accessLog=self.log)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        return self.service.ports[0].getHost().port

    def write(self, text):
        """
        Replace the config file's text.
        """
        with open(self.path, "w") as f:
            f.write(text)


LISTEN = '[[listen]]\naddress = "127.0.0.1"\nport = {port}\n\n'
WS_ROUTE = '[[route]]\npath = "/ws/"\nbackend = "ws://127.0.0.1:{ws}/"\n\n'
HTTP_ROUTE = '[[route]]\npath = "{path}"\nbackend = "http://127.0.0.1:{http}/"\n\n'


class WebSocketsKeptTests(ReloadTestCase):
    """
    Websockets whose route stays stay up across reloads.
    """

    @inlineCallbacks
    def test_twentyReloads(self):
        """
        A websocket exchanging messages across 20 reloads, each changing an
        unrelated route, loses and reorders nothing; the new routes take
        effect at once.
        """
        echo = EchoBackend(self)
        _, one = startBackend(self, Named(b"one"))
        _, two = startBackend(self, Named(b"two"))

        def text(n):
            backend = one if n % 2 == 0 else two
            return (
                LISTEN.format(port=0)
                + WS_ROUTE.format(ws=echo.port)
                + HTTP_ROUTE.format(path="/other/", http=backend)
            )

        port = self.startFrom(text(0))
        client = yield connectAutobahn(self, port, "/ws/echo")
        for n in range(1, 21):
            self.write(text(n))
            result = yield self.service.reload()
            self.assertTrue(result.succeeded, result.problems)
            self.assertEqual(result.changes["routes"]["removed"], [
                "/other/ -> http://127.0.0.1:{}/".format(one if n % 2 else two)
            ])
            for m in range(5):
                client.sendMessage(b"%d-%d" % (n, m))
            for m in range(5):
                message = yield client.nextMessage()
                self.assertEqual(message, (b"%d-%d" % (n, m), False))
            status, body = yield get(port, b"/other/x")
            self.assertEqual((status, body), (200, b"one" if n % 2 == 0 else b"two"))
        # One line per GET; the websocket's comes when it closes.
        self.assertEqual(len([line for line in self.log.lines if b'"GET /other/x' in line]), 20)
        self.assertFalse([line for line in self.log.lines if b" 101 " in line])

    @inlineCallbacks
    def test_badConfigChangesNothing(self):
        """
        A config that does not load is reported with every problem, and the
        config in force keeps serving.
        """
        _, one = startBackend(self, Named(b"one"))
        good = LISTEN.format(port=0) + HTTP_ROUTE.format(path="/", http=one)
        port = self.startFrom(good)
        self.write(good + '[[route]]\npath = "/x"\nbackend = "htp://x"\n')
        result = yield self.service.reload()
        self.assertFalse(result.succeeded)
        self.assertEqual(len(result.problems), 1)
        self.assertIn("route[1].backend: 'htp://x' is not a URL", result.problems[0])
        status, body = yield get(port, b"/")
        self.assertEqual((status, body), (200, b"one"))

    @inlineCallbacks
    def test_removedRouteClosedAfterGrace(self):
        """
        A websocket whose route a reload removes is closed with 1001 after
        C{reload_grace} seconds, on both legs.
        """
        echo = EchoBackend(self)
        server = '[server]\nreload_grace = 0.3\n\n'
        port = self.startFrom(server + LISTEN.format(port=0) + WS_ROUTE.format(ws=echo.port))
        client = yield connectAutobahn(self, port, "/ws/echo")
        backend = echo.last()
        self.write(server + LISTEN.format(port=0) + WS_ROUTE.format(ws=freePort()))
        result = yield self.service.reload()
        self.assertEqual(result.changes["closing"], 1)
        client.sendMessage(b"still here")
        message = yield client.nextMessage()
        self.assertEqual(message, (b"still here", False))
        code, reason = yield client.closed.wait()
        self.assertEqual((code, reason), (1001, "proxyws: route removed by a reload"))
        code, reason = yield backend.closed.wait()
        self.assertEqual(code, 1001)


class ListenerTests(ReloadTestCase):
    """
    Listeners added and removed by a reload.
    """

    @inlineCallbacks
    def test_addAndRemove(self):
        """
        A listener a reload adds serves at once; one it removes stops
        accepting.
        """
        _, one = startBackend(self, Named(b"one"))
        first, second = freePort(), freePort()
        route = HTTP_ROUTE.format(path="/", http=one)
        self.startFrom(LISTEN.format(port=first) + route)
        self.write(LISTEN.format(port=second) + route)
        result = yield self.service.reload()
        self.assertEqual(result.changes["listeners"]["added"], ["127.0.0.1 {}".format(second)])
        status, body = yield get(second, b"/")
        self.assertEqual((status, body), (200, b"one"))
        probe = socket.socket()
        self.addCleanup(probe.close)
        self.assertNotEqual(probe.connect_ex(("127.0.0.1", first)), 0)

    @inlineCallbacks
    def test_portInUseChangesNothing(self):
        """
        A new listener whose port cannot be bound fails the whole reload:
        the routes of the config in force still serve.
        """
        _, one = startBackend(self, Named(b"one"))
        _, two = startBackend(self, Named(b"two"))
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = self.startFrom(LISTEN.format(port=0) + HTTP_ROUTE.format(path="/", http=one))
        self.write(
            LISTEN.format(port=0)
            + LISTEN.format(port=taken.getsockname()[1])
            + HTTP_ROUTE.format(path="/", http=two)
        )
        result = yield self.service.reload()
        self.assertFalse(result.succeeded)
        self.assertIn("listen[1]: cannot listen on 127.0.0.1 port", result.problems[0])
        status, body = yield get(port, b"/")
        self.assertEqual((status, body), (200, b"one"))


class CertificateTests(ReloadTestCase):
    """
    Certificates renewed in place.
    """

    def subject(self, port):
        """
        @return: the CN of the certificate served on C{port} (in a thread).
        """

        def connect():
            context = ssl.create_default_context(cadata=certs.certificatePem(CA.certificate).decode())
            context.check_hostname = False
            with socket.create_connection(("127.0.0.1", port)) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    return dict(x[0] for x in tls.getpeercert()["subject"])["commonName"]

        return deferToThread(connect)

    @inlineCallbacks
    def test_renewedCertificate(self):
        """
        After a reload, new TLS connections get the renewed certificate,
        while a connection opened before it stays up.
        """
        _, one = startBackend(self, Named(b"one"))
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory, True)
        certs.writePair(directory, "proxy", certs.makeCertificate(CA, ["localhost"], commonName="old"))
        text = (
            '[[listen]]\naddress = "127.0.0.1"\nport = 0\n'
            'tls = {{ cert = "{d}/proxy.crt", key = "{d}/proxy.key" }}\n\n'.format(d=directory)
            + HTTP_ROUTE.format(path="/", http=one)
        )
        port = self.startFrom(text)
        name = yield self.subject(port)
        self.assertEqual(name, "old")
        kept = socket.create_connection(("127.0.0.1", port))
        self.addCleanup(kept.close)
        certs.writePair(directory, "proxy", certs.makeCertificate(CA, ["localhost"], commonName="new"))
        result = yield self.service.reload()
        self.assertEqual(result.changes["certificates"], sorted(
            [os.path.join(directory, "proxy.crt"), os.path.join(directory, "proxy.key")]
        ))
        name = yield self.subject(port)
        self.assertEqual(name, "new")
        kept.setblocking(False)
        self.assertRaises(BlockingIOError, kept.recv, 1)
