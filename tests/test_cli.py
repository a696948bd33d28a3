"""
Tests for the C{proxyws} command (L{proxyws.cli}): called in-process through
L{main}, and run as users run it, the console script that pip installs next
to the Python running the tests; and C{twistd proxyws} start-up, which runs
the same checks and prints every problem.
"""

import io
import os
import socket
import subprocess
import sys
import shutil
import tempfile

from twisted.trial.unittest import SynchronousTestCase

import proxyws
from proxyws.cli import main

from .helpers import subprocessEnvironment, twistdCommand

GOOD = '[[listen]]\naddress = "127.0.0.1"\nport = {port}\n'

# Two problems, in two tables.
BAD = (
    '[[listen]]\naddress = "127.0.0.1"\nport = "80"\n\n'
    "[[route]]\nmatch = '^/re/(a+)+$'\nbackend = \"http://127.0.0.1:1/$1\"\n"
)
BAD_LINES = [
    "proxyws: {path}: listen[0].port: '80' is not a port number from 0 to 65535",
    "proxyws: {path}: route[0].match: '^/re/(a+)+$' can take time exponential in "
    "the path's length: '(a+)+' can match the same text in more than one way; make "
    "the inner repeat possessive (a++ rather than a+) or put it in an atomic group "
    "(?>...)",
]


def writeConfig(testCase, text):
    """
    Write a config file in a temporary directory removed after the test.

    @return: its path.
    """
    directory = tempfile.mkdtemp()
    testCase.addCleanup(shutil.rmtree, directory, True)
    path = os.path.join(directory, "proxyws.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def takenPort(testCase):
    """
    @return: a port another socket listens on, for the test's duration.
    """
    taken = socket.socket()
    testCase.addCleanup(taken.close)
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    return taken.getsockname()[1]


class MainTests(SynchronousTestCase):
    """
    L{main} in-process: its exit status and what it writes where.
    """

    def command(self, *argv):
        """
        Run L{main} on C{argv}.

        @return: C{(status, stdout, stderr)}.
        """
        stdout, stderr = io.StringIO(), io.StringIO()
        status = main(list(argv), stdout=stdout, stderr=stderr)
        return status, stdout.getvalue(), stderr.getvalue()

    def test_version(self):
        """
        C{--version} prints C{proxyws X.Y.Z} and exits 0, before or after a
        command.
        """
        expected = (0, "proxyws {}\n".format(proxyws.__version__), "")
        self.assertEqual(self.command("--version"), expected)
        self.assertEqual(self.command("check", "--version"), expected)

    def test_help(self):
        """
        C{--help} prints the usage, naming the commands, and exits 2.
        """
        status, out, err = self.command("--help")
        self.assertEqual((status, err), (2, ""))
        self.assertTrue(out.startswith("Usage: proxyws [--version] COMMAND\n"), out)
        self.assertIn("check", out)
        status, out, err = self.command("check", "--help")
        self.assertEqual(status, 2)
        self.assertTrue(out.startswith("Usage: proxyws check --config FILE.toml\n"), out)

    def test_usageErrors(self):
        """
        No command, an unknown command or option, or C{check} without a
        file: the usage and the reason on standard error, exit 2.
        """
        cases = [
            ((), "a command is required"),
            (("bogus",), "Unknown command: bogus"),
            (("--bogus",), "option --bogus not recognized"),
            (("check",), "--config FILE.toml is required"),
            (("check", "extra"), "Wrong number of arguments."),
        ]
        for argv, reason in cases:
            status, out, err = self.command(*argv)
            self.assertEqual((status, out), (2, ""), argv)
            self.assertTrue(err.startswith("Usage: proxyws"), err)
            self.assertTrue(err.endswith("\nproxyws: " + reason + "\n"), err)

    def test_checkGood(self):
        """
        A good file: one line on standard output, exit 0, for C{--config}
        and C{-c}.
        """
        path = writeConfig(self, GOOD.format(port=8080))
        for option in ("--config", "-c"):
            self.assertEqual(
                self.command("check", option, path),
                (0, "proxyws: {}: configuration OK\n".format(path), ""))

    def test_checkBad(self):
        """
        A bad file: every problem on its own line on standard error, exit 1.
        """
        path = writeConfig(self, BAD)
        status, out, err = self.command("check", "-c", path)
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(err.splitlines(), [line.format(path=path) for line in BAD_LINES])

    def test_checkMissingFile(self):
        """
        A file that cannot be read is one problem.
        """
        path = os.path.join(tempfile.gettempdir(), "proxyws-no-such-file.toml")
        self.assertEqual(
            self.command("check", "-c", path),
            (1, "", "proxyws: {}: cannot read the file: No such file or directory\n"
             .format(path)))

    def test_checkDoesNotBind(self):
        """
        C{check} does not bind the listeners: a port in use (as a running
        proxyws holds it) is no problem.
        """
        path = writeConfig(self, GOOD.format(port=takenPort(self)))
        self.assertEqual(self.command("check", "-c", path)[0], 0)


class ConsoleScriptTests(SynchronousTestCase):
    """
    The C{proxyws} console script, installed by pip, in a subprocess.
    """

    def script(self, *argv):
        """
        Run C{proxyws argv}.

        @return: the L{subprocess.CompletedProcess}, with text output.
        """
        command = os.path.join(os.path.dirname(sys.executable), "proxyws")
        self.assertTrue(
            os.path.exists(command),
            "{} is missing: install proxyws into this Python's environment "
            "(pip install -e '.[test]') to get the console script".format(command))
        return subprocess.run(
            [command, *argv], env=subprocessEnvironment(), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=60)

    def test_version(self):
        """
        C{proxyws --version} prints the version and exits 0.
        """
        result = self.script("--version")
        self.assertEqual(
            (result.returncode, result.stdout, result.stderr),
            (0, "proxyws {}\n".format(proxyws.__version__), ""))

    def test_check(self):
        """
        C{proxyws check --config FILE} exits 0 on a good file and 1 with
        every problem on a bad one.
        """
        good = writeConfig(self, GOOD.format(port=8080))
        result = self.script("check", "--config", good)
        self.assertEqual(
            (result.returncode, result.stdout, result.stderr),
            (0, "proxyws: {}: configuration OK\n".format(good), ""))
        bad = writeConfig(self, BAD)
        result = self.script("check", "--config", bad)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(
            result.stderr.splitlines(), [line.format(path=bad) for line in BAD_LINES])

    def test_usage(self):
        """
        C{proxyws --help} and a bad command exit 2 with the usage.
        """
        for argv in (["--help"], ["bogus"]):
            result = self.script(*argv)
            self.assertEqual(result.returncode, 2, argv)
            self.assertIn("Usage: proxyws", result.stdout + result.stderr)
            self.assertNotIn("Traceback", result.stderr)

    def test_reactorLeftAlone(self):
        """
        C{proxyws check} loads every module a check needs without importing
        the reactor.
        """
        path = writeConfig(self, GOOD.format(port=8080))
        code = (
            "import sys; from proxyws.cli import main; status = main(['check', '-c', %r]); "
            "print(status, 'twisted.internet.reactor' in sys.modules)" % (path,))
        result = subprocess.run(
            [sys.executable, "-c", code], env=subprocessEnvironment(),
            capture_output=True, text=True, timeout=60)
        self.assertEqual(result.stdout.splitlines()[-1], "0 False", result.stderr)


class TwistdStartTests(SynchronousTestCase):
    """
    C{twistd proxyws} prints every problem of a bad config on its own line
    and exits 1, running the same checks.
    """

    def test_everyProblemAtStart(self):
        """
        Both problems of a file, one line each, then exit 1.
        """
        path = writeConfig(self, BAD)
        result = subprocess.run(
            twistdCommand("-n", "--pidfile=", "proxyws", "--config", path),
            env=subprocessEnvironment(), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(
            result.stderr.splitlines()[-2:], [line.format(path=path) for line in BAD_LINES])
        self.assertNotIn("Traceback", result.stdout + result.stderr)
