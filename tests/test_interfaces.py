"""
Every implementation of an interface of L{proxyws.interfaces} provides it.
"""

import os
import tempfile

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from proxyws.accesslog import AccessLog, MemoryAccessLog
from proxyws.config import parseConfig
from proxyws.gate import Gate
from proxyws.interfaces import IAccessLog, IBackendPool, IGate, IRouter
from proxyws.pool import BackendPool
from proxyws.routing import Router

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
