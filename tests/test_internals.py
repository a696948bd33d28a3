"""
Tests for L{proxyws.internals}: every private name of another library that
proxyws uses is still there, and where a public path exists, proxyws works
without the private one.
"""

import subprocess
import sys

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from proxyws import internals

from .helpers import ROOT, subprocessEnvironment

class PrivateNameTests(SynchronousTestCase):
    """
    Each entry of L{internals.PRIVATE_NAMES} exists in the installed
    version of its library.
    """

    def test_present(self):
        """
        Every private name proxyws uses is there; the failure names the
        ones an upgrade removed and what they are for.
        """
        missing = [
            "{}.{} ({}; without it: {})".format(
                getattr(owner, "__name__", owner), name, use, fallback or "no fallback"
            )
            for owner, name, use, fallback in internals.PRIVATE_NAMES
            if not internals.hasName(owner, name)
        ]
        self.assertEqual(
            missing,
            [],
            "a library upgrade removed private names proxyws uses; "
            "see proxyws/internals.py: " + "; ".join(missing),
        )

    def test_detectsAbsence(self):
        """
        L{internals.hasName} tells a name that is not there, so that the
        test above can fail.
        """

        class Owner:
            def __init__(self):
                self._assigned = 1

        self.assertTrue(internals.hasName(Owner, "_assigned"))
        self.assertFalse(internals.hasName(Owner, "_gone"))
        self.assertTrue(internals._DIRECT_WRITES)


class FallbackTests(SynchronousTestCase):
    """
    Without the private names that have a public fallback, proxyws still
    serves.
    """

    def test_writeWithoutQueueAccess(self):
        """
        Without C{FileDescriptor}'s queue, L{internals.writeNow} writes
        through C{transport.write}.
        """
        self.patch(internals, "_DIRECT_WRITES", False)
        transport = StringTransport()
        internals.writeNow(transport, b"bytes")
        self.assertEqual(transport.value(), b"bytes")


class AutobahnPatchTests(SynchronousTestCase):
    """
    The patch of Autobahn's debug formatting is applied when the service
    starts, never by an import.
    """

    def test_notAtImport(self):
        """
        Importing every proxyws module leaves Autobahn's C{pformat} alone.
        """
        code = (
            "import pprint, autobahn.websocket.protocol as p\n"
            "import proxyws.service, proxyws.tap, proxyws.wsproxy, proxyws.wsrelay\n"
            "import proxyws.workers, proxyws.demo\n"
            "assert p.pformat is pprint.pformat, p.pformat\n"
            "from proxyws.internals import quietAutobahnDebugLogs\n"
            "quietAutobahnDebugLogs()\n"
            "assert p.pformat is not pprint.pformat\n"
            "assert str(p.pformat({'a': 1})) == \"{'a': 1}\"\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=subprocessEnvironment(),
            capture_output=True,
            text=True,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
