"""
Shared helpers for the tests: real servers on 127.0.0.1 port 0, stopped in
cleanup, and a raw TCP client.
"""

import os
import shutil
import socket
import sys
import tempfile

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.web.server import Site

from proxyws.accesslog import MemoryAccessLog
from proxyws.config import parseConfig
from proxyws.service import ProxyService, bindListeners

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
