"""
Every implementation of an interface of L{proxyws.interfaces} provides it.
"""

import os
import tempfile

from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.static import Data
from zope.interface import implementer
from zope.interface.verify import verifyObject

from proxyws.accesslog import AccessLog, MemoryAccessLog
from proxyws.backend import BackendConnection
from proxyws.config import parseConfig
from proxyws.gate import Gate
from proxyws.httpproxy import HTTPRouteHandler
from proxyws.interfaces import IAccessLog, IBackendPool, IGate, IRouteHandler, IRouter
from proxyws.pool import BackendPool, backendEndpoint
from proxyws.routing import Router
from proxyws.service import buildSite
from proxyws.timers import Deadline
from proxyws.wsproxy import WebSocketRouteHandler

from .helpers import proxyConfig, rawRequest, startBackend
from .wsbackends import waitUntil

CONFIG = """
[[listen]]
address = "127.0.0.1"
port = 0

[[host]]
names = ["a.example"]

  [[host.route]]
  path = "/"
  backend = "http://127.0.0.1:1/"
"""


class InterfaceTests(SynchronousTestCase):
    """
    C{verifyObject} on each implementation.
    """

    def test_accessLogs(self):
        """
        L{AccessLog} and L{MemoryAccessLog} provide L{IAccessLog}.
        """
        directory = tempfile.mkdtemp()
        log = AccessLog.open(os.path.join(directory, "access.log"))
        self.addCleanup(log.close)
        self.assertTrue(verifyObject(IAccessLog, log))
        self.assertTrue(verifyObject(IAccessLog, MemoryAccessLog()))

    def test_router(self):
        """
        L{Router} provides L{IRouter}.
        """
        config = parseConfig(CONFIG, "p.toml")
        self.assertTrue(verifyObject(IRouter, Router(config.routes, config.hosts)))

    def test_gate(self):
        """
        L{Gate} provides L{IGate}.
        """
        self.assertTrue(verifyObject(IGate, Gate({})))

    def test_pool(self):
        """
        L{BackendPool} provides L{IBackendPool}.
        """
        self.assertTrue(verifyObject(IBackendPool, BackendPool(MemoryReactorClock())))

    def test_routeHandlers(self):
        """
        L{HTTPRouteHandler} and L{WebSocketRouteHandler} provide
        L{IRouteHandler}.
        """
        config = parseConfig(CONFIG, "p.toml")
        reactor = MemoryReactorClock()
        route = config.routes[0]
        for handler in (
            HTTPRouteHandler(reactor, BackendPool(reactor), route),
            WebSocketRouteHandler(reactor, route),
        ):
            self.assertTrue(verifyObject(IRouteHandler, handler))
            self.assertIs(handler.route, route)


@implementer(IBackendPool)
class SingleUsePool:
    """
    An L{IBackendPool} of its own: a new connection for every request,
    closed when its response is complete.

    @ivar events: what the connections told the pool, in order.
    """

    def __init__(self, reactor):
        self._reactor = reactor
        self.events = []

    def connection(self, backend, connectTimeout, fresh=False):
        """
        Connect anew.
        """
        factory = Factory.forProtocol(BackendConnection)
        factory.noisy = False
        endpoint = backendEndpoint(self._reactor, backend, connectTimeout)

        def made(protocol):
            protocol.pool = self
            protocol.deadline = Deadline(self._reactor)
            return protocol

        return endpoint.connect(factory).addCallback(made)

    def takeIdle(self, backend):
        """
        Nothing is kept idle.
        """
        return None

    def release(self, connection):
        """
        Close it: it carried its one request.
        """
        self.events.append("release")
        connection.transport.loseConnection()

    def lost(self, connection):
        """
        Note it.
        """
        self.events.append("lost")

    def closeIdle(self):
        """
        Nothing is idle.
        """


class OtherPoolTests(TestCase):
    """
    The proxy uses its pool only through L{IBackendPool}, so that another
    implementation can replace it.
    """

    @inlineCallbacks
    def test_singleUsePool(self):
        """
        Two requests relayed through L{SingleUsePool} reach a real backend
        on two connections, each released and then lost.
        """
        from twisted.internet import reactor

        page = Data(b"hello", "text/plain")
        page.isLeaf = True
        _, backendPort = startBackend(self, page)
        config = parseConfig(proxyConfig(backendPort), "/tmp/p.toml")
        pool = SingleUsePool(reactor)
        self.assertTrue(verifyObject(IBackendPool, pool))
        site, _ = buildSite(config, reactor, MemoryAccessLog(), pool=pool)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        for _ in range(2):
            raw = yield rawRequest(
                port.getHost().port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            )
            self.assertTrue(raw.startswith(b"HTTP/1.1 200 OK\r\n"), raw)
            self.assertTrue(raw.endswith(b"\r\n\r\nhello"), raw)
        yield waitUntil(lambda: len(pool.events) == 4)
        self.assertEqual(pool.events, ["release", "lost"] * 2)
