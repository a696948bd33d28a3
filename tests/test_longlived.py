"""
Long-lived connections: C{[server] max_websocket_lifetime} closes a
websocket open longer, and C{shutdown_timeout} is a deadline no connection
outlives at a graceful stop.

Most tests run the relay on a L{MemoryReactorClock} with in-memory peers
(L{tests.test_wsproxy.RelayTestCase}); one of each runs over real loopback
sockets.
"""

import attr
from twisted.internet.defer import inlineCallbacks, succeed
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from proxyws.accesslog import MemoryAccessLog
from proxyws.config import parseConfig
from proxyws.errors import ConfigError
from proxyws.service import ProxyService, buildSite
from proxyws.sockets import bindListeners
from proxyws.wsrelay import CLOSE_TIMEOUT

from .helpers import proxyConfig, startProxy
from .test_wsproxy import FRONT, RawPeer, RelayTestCase, backendFactory, clientFactory
from .wsbackends import (
    CLOSE,
    EchoBackend,
    RawBackendProtocol,
    closePayload,
    connectAutobahn,
    connectRaw,
    reactor,
    startSocketBackend,
    upgradeRequest,
)

# What both peers get when the lifetime is over.
LIFETIME_CLOSE = (True, 1001, "proxyws: max_websocket_lifetime reached")

# What both peers get at a graceful stop.
SHUTDOWN_CLOSE = (True, 1001, "proxyws: server shutting down")

# The config the relay tests run: one websocket route to 127.0.0.1:9000.
CONFIG = """
[server]
connect_timeout = 5
response_timeout = 10
{server}

[[listen]]
address = "127.0.0.1"
port = 0

[[route]]
path = "/"
backend = "ws://127.0.0.1:9000/"
"""


def deaf(peer):
    """
    Make C{peer} read nothing more: it never answers a close frame.
    """
    peer.dataReceived = lambda data: None


def openOnSite(testCase):
    """
    Open one more websocket through the site a L{RelayTestCase} built.

    @return: C{(client, backend)}: the two open L{RecordingPeer}s.
    """
    client = clientFactory(testCase.reactor).buildProtocol(FRONT)
    testCase.connectClient(client)
    testCase.pump()
    backend = backendFactory(testCase.reactor).buildProtocol(FRONT)
    testCase.acceptBackend(backend)
    testCase.pump()
    testCase.assertTrue(client.opened and backend.opened)
    return client, backend


class LifetimeTestCase(RelayTestCase):
    """
    The relay tests' proxy, on a config with C{[server]} keys of the test's
    own.
    """

    def buildProxy(self, server=""):
        """
        Build the site for L{CONFIG} with C{server} in its C{[server]}.
        """
        self.config = parseConfig(CONFIG.format(server=server), "/tmp/x.toml")
        self.log = MemoryAccessLog()
        self.site, self.pool = buildSite(self.config, self.reactor, self.log)

    def openOnSite(self):
        """
        Open one more websocket through the site already built.

        @return: C{(client, backend)}: the two open L{RecordingPeer}s.
        """
        return openOnSite(self)

    def openWebSocket(self, server=""):
        """
        Build the proxy and open a websocket through it.
        """
        self.buildProxy(server)
        return self.openOnSite()


class LifetimeTests(LifetimeTestCase):
    """
    C{max_websocket_lifetime} on the clock.
    """

    def test_closedWhenOver(self):
        """
        A websocket open for C{max_websocket_lifetime} seconds is closed
        with 1001 on both legs, however busy it is; its access-log line is
        written and no timer is left.
        """
        client, backend = self.openWebSocket("max_websocket_lifetime = 3600")
        for _ in range(5):
            self.advance(700)
            client.sendMessage(b"busy")
            backend.sendMessage(b"busy too")
            self.pump()
        self.advance(99)
        self.assertEqual((client.closes, backend.closes), ([], []))
        self.advance(1)
        self.assertEqual((client.closes, backend.closes), ([LIFETIME_CLOSE], [LIFETIME_CLOSE]))
        self.assertEqual(len(backend.messages), 5)
        self.assertEqual(len(self.log.lines), 1)
        self.assertIn(b'"GET /chat HTTP/1.1" 101 ', self.log.lines[0])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_whyLogged(self):
        """
        The operational log says why the websocket closed.
        """
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.openWebSocket("max_websocket_lifetime = 60")
        self.advance(60)
        whys = [e["why"] for e in events if "why" in e and "uri" in e]
        self.assertEqual(whys, ["open longer than max_websocket_lifetime (60 s)"])

    def test_oneTimerWhenOnNoneWhenOff(self):
        """
        The lifetime costs one timer per websocket when it is set, and none
        when it is not (the default).
        """
        timers = {}
        for server in ("", "max_websocket_lifetime = 60"):
            self.setUp()
            self.openWebSocket(server)
            timers[server] = len(self.reactor.getDelayedCalls())
        self.assertEqual(timers["max_websocket_lifetime = 60"], timers[""] + 1)

    def test_closedEarlierCancelsIt(self):
        """
        A websocket that closes before its lifetime is over leaves no timer.
        """
        client, backend = self.openWebSocket("max_websocket_lifetime = 60")
        client.sendCloseFrame(1000, b"bye")
        self.pump()
        self.assertEqual(backend.closes, [(True, 1000, "bye")])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_afterGracefulStop(self):
        """
        A websocket already closed by a graceful stop is not closed again
        when its lifetime would be over.
        """
        client, backend = self.openWebSocket("max_websocket_lifetime = 60")
        self.site.drain()
        self.pump()
        self.advance(60)
        self.assertEqual((client.closes, backend.closes), ([SHUTDOWN_CLOSE], [SHUTDOWN_CLOSE]))
        self.assertEqual(len(self.log.lines), 1)

    def test_reloadAppliesToNewWebSockets(self):
        """
        A reload changing C{max_websocket_lifetime} (the site configured
        anew) applies to the websockets opened afterwards; those open keep
        the lifetime they opened with.
        """
        first = self.openWebSocket("max_websocket_lifetime = 60")
        self.site.configure(attr.evolve(self.config.server, maxWebsocketLifetime=0.0))
        second = self.openOnSite()
        self.advance(30)
        self.site.configure(attr.evolve(self.config.server, maxWebsocketLifetime=10.0))
        third = self.openOnSite()
        self.advance(10)
        closes = [[peer.closes for peer in pair] for pair in (first, second, third)]
        self.assertEqual(closes, [[[], []], [[], []], [[LIFETIME_CLOSE]] * 2])
        self.advance(20)
        closes = [[peer.closes for peer in pair] for pair in (first, second)]
        self.assertEqual(closes, [[[LIFETIME_CLOSE]] * 2, [[], []]])


class LifetimeConfigTests(SynchronousTestCase):
    """
    The C{max_websocket_lifetime} key.
    """

    # Its value in the file -> the value read, or the error's text.
    VALUES = [
        (None, 0.0),
        ("0", 0.0),
        ("3600", 3600.0),
        ("1", 1.0),
        ("86400.5", 86400.5),
        (
            "0.5",
            "x.toml: server.max_websocket_lifetime: 0.5 is not 0 (off) or a number of seconds "
            "from 1 to 1e9",
        ),
        (
            '"1h"',
            "x.toml: server.max_websocket_lifetime: '1h' is not a number of seconds",
        ),
    ]

    def test_values(self):
        """
        Each row of L{VALUES}: off by default and with 0, else at least a
        second.
        """
        seen = []
        for value, _ in self.VALUES:
            line = "" if value is None else "max_websocket_lifetime = " + value
            try:
                config = parseConfig(CONFIG.format(server=line), "x.toml")
            except ConfigError as e:
                seen.append((value, str(e)))
            else:
                seen.append((value, config.server.maxWebsocketLifetime))
        self.assertEqual(seen, self.VALUES)


class ServiceClockTestCase(RelayTestCase):
    """
    A whole L{ProxyService} on the memory reactor, its listener's site
    connected to in-memory peers.
    """

    def buildProxy(self, server=""):
        """
        Start a L{ProxyService} on L{CONFIG} with C{server} in its
        C{[server]}.
        """
        config = parseConfig(CONFIG.format(server=server), "/tmp/x.toml")
        self.log = MemoryAccessLog()
        self.service = ProxyService(config, bindListeners(config), self.reactor, accessLog=self.log)
        self.service.startService()
        for port in self.service.ports:
            # A real port's stopListening returns a Deferred; the fake's
            # returns nothing.
            port.stopListening = lambda: succeed(None)
        [self.site] = self.service.sites


class LifetimeReloadTests(ServiceClockTestCase):
    """
    A reload changing C{max_websocket_lifetime}, through the service.
    """

    def test_reload(self):
        """
        Websockets opened before a reload keep the lifetime they opened
        with; those opened after it take the reloaded one.
        """
        before = self.openWebSocket("max_websocket_lifetime = 60")
        config = parseConfig(CONFIG.format(server="max_websocket_lifetime = 10"), "/tmp/x.toml")
        result = self.successResultOf(self.service.reload(config))
        self.assertTrue(result.succeeded, result.problems)
        after = openOnSite(self)
        self.advance(10)
        closes = [[peer.closes for peer in pair] for pair in (before, after)]
        self.assertEqual(closes, [[[], []], [[LIFETIME_CLOSE]] * 2])
        self.advance(50)
        self.assertEqual([peer.closes for peer in before], [[LIFETIME_CLOSE]] * 2)


class ShutdownDeadlineTests(ServiceClockTestCase):
    """
    C{shutdown_timeout} bounds a graceful stop, whatever the peers do.
    """

    # What an open websocket's peers do at a graceful stop, and the
    # shutdown_timeout -> the seconds after which both legs are closed and
    # the stop is over, and how the legs ended (their close frames
    # answered, or aborted).
    STOPS = [
        ("answer", 30, (0, "closed")),
        ("deaf", 1, (1, "aborted")),
        ("deaf", 30, (CLOSE_TIMEOUT, "aborted")),
    ]

    def stopWith(self, peers, timeout):
        """
        Open a websocket, stop the service with C{shutdown_timeout =
        timeout} and let the clock run until the stop is over.

        @param peers: C{"answer"}, or C{"deaf"} for peers that never answer.
        @return: C{(seconds, "closed" or "aborted")}.
        """
        client, backend = self.openWebSocket("shutdown_timeout = {}".format(timeout))
        if peers == "deaf":
            deaf(client)
            deaf(backend)
        started = self.reactor.seconds()
        stopped = self.service.stopService()
        self.pump()
        while not stopped.called:
            self.advance(0.5)
        self.assertEqual(len(self.log.lines), 1)
        self.assertTrue(self.log.closed)
        proxySides = [self.connections[0].serverIO, self.connections[1].clientIO]
        self.assertTrue(all(side.disconnected for side in proxySides))
        how = "aborted" if all(side.aborted for side in proxySides) else "closed"
        return self.reactor.seconds() - started, how

    def test_stops(self):
        """
        For each row of L{STOPS}, the stop is over when the row says: at
        once when the peers answer the close, else by the relay's close
        timeout or the shutdown deadline, whichever comes first.
        """
        seen = []
        for peers, timeout, _ in self.STOPS:
            self.setUp()
            seen.append((peers, timeout, self.stopWith(peers, timeout)))
        self.assertEqual(seen, self.STOPS)

    def test_handshakeInFlight(self):
        """
        A websocket whose backend never answers the upgrade (its
        C{response_timeout}, 10 s, is later): the deadline closes the client's
        connection and the backend's, and the stop is over.
        """
        self.buildProxy("shutdown_timeout = 1")
        client = RawPeer(upgradeRequest(b"/chat", b"127.0.0.1:8080"))
        self.connectClient(client)
        self.pump()
        backend = RawPeer()
        self.acceptBackend(backend)
        self.pump()
        stopped = self.service.stopService()
        self.advance(0.5)
        self.assertNoResult(stopped)
        self.advance(0.5)
        self.successResultOf(stopped)
        self.assertTrue(client.lost and backend.lost)
        self.assertEqual(len(self.log.lines), 1)

    def test_deadlineLogged(self):
        """
        The deadline, when it closes connections, says so.
        """
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.stopWith("deaf", 1)
        formats = [e.get("log_format") for e in events]
        self.assertIn("shutdown deadline reached: closing the remaining connections", formats)


class DeafBackendProtocol(RawBackendProtocol):
    """
    A raw backend that answers the upgrade and then reads nothing: it never
    answers a close frame.
    """

    def dataReceived(self, data):
        """
        Answer the upgrade; ignore everything after it.
        """
        if not self._open:
            RawBackendProtocol.dataReceived(self, data)


class LoopbackTests(TestCase):
    """
    The lifetime and the shutdown deadline over real sockets.
    """

    timeout = 30

    @inlineCallbacks
    def test_lifetime(self):
        """
        With C{max_websocket_lifetime = 1}, an echoing websocket is closed
        with 1001 on both legs a second after it opened.
        """
        echo = EchoBackend(self)
        config = proxyConfig(
            echo.port, extra="\n[server]\nmax_websocket_lifetime = 1\n",
            route='path = "/"\nbackend = "ws://127.0.0.1:{}/"\n'.format(echo.port))
        _, port, log = startProxy(self, config)
        client = yield connectAutobahn(self, port, "/echo")
        client.sendMessage(b"hello")
        message = yield client.nextMessage()
        self.assertEqual(message, (b"hello", False))
        closed = yield client.closed.wait(timeout=10)
        self.assertEqual(closed, LIFETIME_CLOSE[1:])
        code, _ = yield echo.last().closed.wait(timeout=10)
        self.assertEqual(code, 1001)

    @inlineCallbacks
    def test_shutdownDeadline(self):
        """
        A websocket whose client and backend never answer the proxy's close
        frames: the stop ends at C{shutdown_timeout}, both connections
        closed, the deadline logged and the websocket's access-log line
        written.
        """
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        factory, backendPort = startSocketBackend(self, DeafBackendProtocol)
        config = proxyConfig(
            backendPort, extra="\n[server]\nshutdown_timeout = 1\n",
            route='path = "/"\nbackend = "ws://127.0.0.1:{}/"\n'.format(backendPort))
        service, port, log = startProxy(self, config)
        client = yield connectRaw(self, port, upgradeRequest(b"/deaf", b"127.0.0.1"))
        head = yield client.head.wait(timeout=10)
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
        yield service.stopService().addTimeout(10, reactor())
        yield client.lost.wait(timeout=10)
        [backend] = factory.protocols
        yield backend.lost.wait(timeout=10)
        self.assertEqual(
            [(opcode, payload) for _, opcode, payload in client.frames],
            [(CLOSE, closePayload(1001, b"proxyws: server shutting down"))],
        )
        formats = [e.get("log_format") for e in events]
        self.assertIn("shutdown deadline reached: closing the remaining connections", formats)
        self.assertEqual(len([line for line in log.lines if b'"GET /deaf HTTP/1.1" 101 ' in line]), 1)
