"""
Shared helpers for the tests: real servers on 127.0.0.1 port 0, stopped in
cleanup, and a raw TCP client.
"""

import os
import shutil
import socket
import sys
import tempfile
import threading

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.web.server import Site

from proxyws.accesslog import MemoryAccessLog
from proxyws.config import parseConfig
from proxyws.service import ProxyService
from proxyws.sockets import bindListeners

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def freePort(family=socket.AF_INET, address="127.0.0.1"):
    """
    A port that nothing listens on right now.
    """
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return s.getsockname()[1]


class CountingSite(Site):
    """
    A backend site that counts the connections made to it.

    @ivar connections: how many connections it has accepted.
    """

    noisy = False
    connections = 0

    def buildProtocol(self, addr):
        """
        Count, then build as usual.
        """
        self.connections += 1
        return Site.buildProtocol(self, addr)


def startBackend(testCase, resource):
    """
    Serve C{resource} on 127.0.0.1, port 0, until the test ends.

    @return: C{(site, port number)}.
    """
    from twisted.internet import reactor

    site = CountingSite(resource)
    site.log = lambda request: None
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    testCase.addCleanup(port.stopListening)
    return site, port.getHost().port


def startProxy(testCase, configText, filename="test.toml"):
    """
    Start proxyws in this process on a config whose listeners use port 0.

    @return: C{(service, proxy port, access log)}; the access log is a
        L{MemoryAccessLog}.
    """
    from twisted.internet import reactor

    directory = tempfile.mkdtemp()
    testCase.addCleanup(shutil.rmtree, directory, True)
    config = parseConfig(configText, os.path.join(directory, filename))
    log = MemoryAccessLog()
    service = ProxyService(config, bindListeners(config), reactor, accessLog=log)
    service.startService()
    testCase.addCleanup(service.stopService)
    return service, service.ports[0].getHost().port, log


def proxyConfig(backendPort, extra="", route=None):
    """
    A config text with one listener on port 0 and one route to a backend.
    """
    route = route or 'path = "/"\nbackend = "http://127.0.0.1:{}/"\n'.format(backendPort)
    return '[[listen]]\naddress = "127.0.0.1"\nport = 0\n\n[[route]]\n' + route + extra


class _Collector(Protocol):
    def __init__(self, data, closeAfter=None):
        self._data = data
        self.received = []
        self.done = Deferred()
        self._closeAfter = closeAfter

    def connectionMade(self):
        self.transport.write(self._data)
        if self._closeAfter is not None:
            from twisted.internet import reactor

            reactor.callLater(self._closeAfter, self.transport.loseConnection)

    def dataReceived(self, data):
        self.received.append(data)

    def connectionLost(self, reason):
        self.done.callback(b"".join(self.received))


def rawRequest(port, data, closeAfter=None, host="127.0.0.1"):
    """
    Send raw bytes to C{port} and collect everything until the server
    closes the connection.

    @param closeAfter: seconds after which the client closes by itself.
    @return: a L{Deferred} firing with the bytes received.
    """
    from twisted.internet import reactor

    protocol = _Collector(data, closeAfter)
    factory = ClientFactory.forProtocol(lambda: protocol)
    factory.noisy = False
    reactor.connectTCP(host, port, factory)
    return protocol.done


def rss(pid=None):
    """
    The resident set size of a process, in bytes.
    """
    with open("/proc/{}/status".format(pid or "self")) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def subprocessEnvironment():
    """
    The environment for running C{twistd proxyws} from this checkout.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def twistdCommand(*arguments):
    """
    The command line that runs C{twistd} with this Python.
    """
    return [os.path.join(os.path.dirname(sys.executable), "twistd"), *arguments]


# ---------------------------------------------------------------------------
# In-memory connections for socket-free tests.
#
# twisted.test.iosim is not public API, so it is wrapped once, here.  Its
# FakeTransport is extended to behave like a TCP transport as a producer:
# it records producerState as StringTransport does, a paused transport's
# protocol is handed nothing, and a second registerProducer raises.
# ---------------------------------------------------------------------------

from twisted.internet.error import ConnectionAborted, ConnectionLost  # noqa: E402
from twisted.test.iosim import FakeTransport  # noqa: E402


class MemoryTransport(FakeTransport):
    """
    One end of a L{MemoryConnection}.

    @ivar producerState: C{"producing"}, C{"paused"} or C{"stopped"}; while
        not producing, nothing is delivered to this end's protocol.
    @ivar aborted: whether this end called C{abortConnection}.
    """

    producerState = "producing"
    aborted = False

    def registerProducer(self, producer, streaming):
        """
        Register C{producer}, refusing a second one as a real transport does.

        @raise RuntimeError: when a producer is already registered.
        """
        if self.producer is not None:
            raise RuntimeError(
                "Cannot register producer {!r}, because producer {!r} was never "
                "unregistered.".format(producer, self.producer)
            )
        FakeTransport.registerProducer(self, producer, streaming)

    def pauseProducing(self):
        """
        Stop handing received bytes to the protocol.
        """
        if self.producerState == "producing":
            self.producerState = "paused"

    def resumeProducing(self):
        """
        Hand received bytes to the protocol again.
        """
        if self.producerState == "paused":
            self.producerState = "producing"

    def stopProducing(self):
        """
        Stop for good and close the connection.
        """
        self.producerState = "stopped"
        self.loseConnection()

    def abortConnection(self):
        """
        Close at once: unsent bytes are dropped, the peer sees a reset.
        """
        self.aborted = True
        self.stream = []
        self.loseConnection()


class MemoryConnection:
    """
    Two protocols connected in memory; L{pump} moves bytes between them.

    @ivar serverIO: the accepting end's L{MemoryTransport}.
    @ivar clientIO: the connecting end's L{MemoryTransport}.
    """

    def __init__(self, server, client, serverAddress=None, clientAddress=None):
        """
        Connect C{server} and C{client}: both get C{makeConnection}, the
        server first.

        @param serverAddress: the server's address (its C{getHost}, the
            client's C{getPeer}).
        @param clientAddress: the client's address.
        """
        self.server = server
        self.client = client
        self.serverIO = MemoryTransport(server, True, serverAddress, clientAddress)
        self.clientIO = MemoryTransport(client, False, clientAddress, serverAddress)
        server.makeConnection(self.serverIO)
        client.makeConnection(self.clientIO)

    def pump(self):
        """
        Deliver what each end wrote to the other, unless the other is paused;
        then, when one end has closed and written everything, close both.

        @return: whether anything happened.
        """
        ends = ((self.clientIO, self.serverIO), (self.serverIO, self.clientIO))
        moved = False
        for source, sink in ends:
            if sink.disconnected or sink.producerState != "producing":
                continue
            data = source.getOutBuffer()
            if data:
                sink.bufferReceived(data)
                moved = True
        if moved:
            return True
        for source, sink in ends:
            if source.disconnecting and not source.disconnected and not source.stream:
                if source.aborted:
                    source.disconnectReason = ConnectionAborted()
                    sink.disconnectReason = ConnectionLost()
                self._close(sink, source)
                return True
        return False

    def lose(self, reason):
        """
        The connection breaks: both ends lose it with C{reason} and bytes
        not yet delivered are gone.

        @param reason: an exception, such as L{ConnectionLost}.
        """
        for end in (self.serverIO, self.clientIO):
            end.disconnectReason = reason
        self._close(self.serverIO, self.clientIO)

    def _close(self, first, second):
        for end in (first, second):
            end.disconnecting = end.disconnected = True
            end.stream = []
        for end in (first, second):
            end.reportDisconnect()


def pumpAll(clock, connections):
    """
    Pump C{connections} and run C{clock}'s due calls until nothing moves.

    @param clock: a L{twisted.internet.task.Clock} (or MemoryReactorClock).
    @param connections: L{MemoryConnection}s.
    @raise AssertionError: when it never goes quiet.
    """
    for _ in range(10000):
        clock.advance(0)
        if not any([connection.pump() for connection in connections]):
            return
    raise AssertionError("connections never went quiet")


class ThreadedServer:
    """
    A raw-socket server on 127.0.0.1 for memory tests: one thread accepts,
    one thread per connection runs C{serve(socket)} (subclasses define it).
    No Twisted, so the test process's own memory stays out of the picture.

    @ivar port: the port it listens on.
    @ivar errors: exceptions raised while serving.
    """

    socketTimeout = 30

    def __init__(self):
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        # accept() wakes up now and then to see whether close() was called.
        self._listener.settimeout(0.05)
        self._closed = threading.Event()
        self.port = self._listener.getsockname()[1]
        self.errors = []
        self._connections = []
        self._threads = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._closed.is_set():
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.settimeout(self.socketTimeout)
            self._connections.append(sock)
            thread = threading.Thread(target=self.serve, args=(sock,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def close(self):
        """
        Stop listening, close every connection and wait for the threads.
        """
        self._closed.set()
        self._thread.join(5)
        self._listener.close()
        for sock in self._connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in self._threads:
            thread.join(5)
