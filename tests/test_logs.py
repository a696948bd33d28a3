"""
Tests for L{proxyws.logs}.
"""

from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase

from proxyws import logs


class ProxyLoggerTests(SynchronousTestCase):
    def setUp(self):
        self.events = []
        self.log = logs.ProxyLogger(observer=self.events.append)
        self.addCleanup(logs.setLevel, "info")

    def emitAll(self):
        self.log.debug("d")
        self.log.info("i")
        self.log.warn("w")
        self.log.error("e")
        self.log.critical("c")
        return [event["log_level"] for event in self.events]

    def test_defaultInfo(self):
        """
        Before any level is set, debug messages are dropped.
        """
        self.assertEqual(logs._dropped, frozenset([LogLevel.debug]))

    def test_levels(self):
        """
        Each level lets through its own messages and the more severe ones.
        """
        expected = [LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical]
        for index, name in enumerate(logs.LEVELS):
            logs.setLevel(name)
            del self.events[:]
            self.assertEqual(self.emitAll(), expected[index:], name)

    def test_failureKeptAtError(self):
        """
        C{failure()} (level critical) passes any level.
        """
        logs.setLevel("critical")
        try:
            1 / 0
        except ZeroDivisionError:
            self.log.failure("boom")
        self.assertEqual([e["log_level"] for e in self.events], [LogLevel.critical])
