"""
The twistd surface as users meet it: the plugin found by Twisted, imports
that leave the reactor alone, C{twistd proxyws --config} serving requests,
one readable line for a bad config, and a graceful stop on SIGTERM/SIGINT.

Every test runs proxyws in a subprocess, on 127.0.0.1 and free ports, with
its files in a temporary directory, and kills what it started.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from twisted.trial.unittest import SynchronousTestCase

from proxyws.schema import LISTEN_KEYS

from .helpers import freePort, subprocessEnvironment, twistdCommand

# Seconds any single wait in these tests may take before the test fails.
WAIT = 10.0

# One access-log line in Apache's combined format, as proxyws writes it for
# the requests these tests make (%h unquoted, %l and %u "-").
COMBINED_LINE = re.compile(
    rb'127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
    rb'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<size>\d+|-) '
    rb'"(?P<referer>[^"]*)" "(?P<agent>[^"]*)"\n'
)


def waitFor(predicate, timeout=WAIT, what="the condition", log=None, step=0.05):
    """
    Poll C{predicate} every C{step} seconds until it returns something true.

    @param what: what is waited for, for the failure's message.
    @param log: a callable returning text to add to that message.
    @return: the true value.
    @raise AssertionError: when C{timeout} seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("waited {:g} s for {}{}".format(
                timeout, what, ":\n" + log() if log else ""))
        time.sleep(step)


def temporaryDirectory(testCase):
    """
    A new temporary directory, removed when the test ends.

    @param testCase: the running test.
    @return: its path.
    """
    directory = tempfile.mkdtemp(prefix="proxyws-test-")
    testCase.addCleanup(shutil.rmtree, directory, True)
    return directory


def runTwistd(testCase, arguments, timeout=WAIT):
    """
    Run C{twistd} to completion (for commands that must fail at start-up).

    @param arguments: the arguments after C{twistd}.
    @return: the L{subprocess.CompletedProcess}, with text output.
    """
    try:
        return subprocess.run(
            twistdCommand(*arguments),
            env=subprocessEnvironment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        testCase.fail("twistd {} still running after {}s: {!r}".format(arguments, timeout, e))


class ProxyProcess:
    """
    A C{twistd -n proxyws} subprocess, its directory and its output.

    @ivar process: the L{subprocess.Popen}.
    @ivar directory: the temporary directory holding the config and output.
    @ivar configPath: the config file's path.
    """

    def __init__(self, process, directory, configPath, outputPath):
        self.process = process
        self.directory = directory
        self.configPath = configPath
        self._outputPath = outputPath

    @property
    def pid(self):
        """
        The process id.
        """
        return self.process.pid

    def output(self):
        """
        Everything the process wrote to standard output and error so far.
        """
        with open(self._outputPath, "r", errors="replace") as f:
            return f.read()

    def waitForPort(self, port, timeout=WAIT):
        """
        Wait until C{port} on 127.0.0.1 accepts connections.

        @raise AssertionError: if the process exits or the time runs out.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    "proxyws exited with status {} before listening:\n{}".format(
                        self.process.returncode, self.output()
                    )
                )
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise AssertionError(
            "proxyws did not listen on port {} within {}s:\n{}".format(port, timeout, self.output())
        )

    def stop(self, signum, timeout=WAIT):
        """
        Send C{signum} and wait for the process to exit.

        @return: C{(exit status, seconds taken)}.
        @raise AssertionError: if it does not exit in time.
        """
        started = time.monotonic()
        self.process.send_signal(signum)
        return self.waitForExit(timeout), time.monotonic() - started

    def waitForExit(self, timeout=WAIT):
        """
        Wait for the process to exit.

        @return: its exit status.
        @raise AssertionError: if it does not exit in time.
        """
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                "proxyws still running after {}s:\n{}".format(timeout, self.output())
            ) from None

    def kill(self):
        """
        Kill the process if it still runs, and reap it.
        """
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(WAIT)


def startProxyProcess(testCase, configText, arguments=()):
    """
    Write C{configText} to a temporary directory and start
    C{twistd [arguments] -n --pidfile= proxyws --config FILE} on it.

    C{configText} may use C{{directory}}, replaced by the temporary
    directory's path.  The process is killed when the test ends.

    @return: a L{ProxyProcess}.
    """
    directory = temporaryDirectory(testCase)
    configPath = os.path.join(directory, "proxyws.toml")
    with open(configPath, "w") as f:
        f.write(configText.replace("{directory}", directory))
    outputPath = os.path.join(directory, "output.txt")
    with open(outputPath, "wb") as output:
        process = subprocess.Popen(
            twistdCommand(*arguments, "-n", "--pidfile=", "proxyws", "--config", configPath),
            env=subprocessEnvironment(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
    proxy = ProxyProcess(process, directory, configPath, outputPath)
    testCase.addCleanup(proxy.kill)
    return proxy


def proxyConfigText(port, backendPort, server="", demo=False):
    """
    A config with one listener on C{port} and every path routed to
    C{backendPort} on 127.0.0.1.

    @param server: extra lines of the C{[server]} table.
    @param demo: serve the demo backend on C{backendPort} too.
    """
    return (
        "[server]\n{server}\n"
        '[[listen]]\naddress = "127.0.0.1"\nport = {port}\n\n'
        "{demo}"
        '[[route]]\npath = "/"\nbackend = "http://127.0.0.1:{backend}/"\n'
    ).format(
        server=server,
        port=port,
        backend=backendPort,
        demo='[demo]\naddress = "127.0.0.1"\nport = {}\n\n'.format(backendPort) if demo else "",
    )


def refused(port):
    """
    Whether a connection to C{port} on 127.0.0.1 is refused.
    """
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def receiveUntilClosed(connection, timeout=WAIT):
    """
    Read from C{connection} until the peer closes it.

    @return: the bytes received, or L{None} if it stayed open for C{timeout}.
    """
    connection.settimeout(timeout)
    received = []
    try:
        while True:
            data = connection.recv(65536)
            if not data:
                return b"".join(received)
            received.append(data)
    except ConnectionResetError:
        return b"".join(received)
    except socket.timeout:
        return None


class _SlowHandler(BaseHTTPRequestHandler):
    """
    C{/slow} answers after 1.5 seconds, C{/never} never answers, anything
    else answers at once.  The server's C{arrived} event is set when a
    request comes in.
    """

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        """
        Answer after the delay the path asks for.
        """
        self.server.arrived.set()
        if self.path == "/never":
            self.server.released.wait(WAIT * 3)
            return
        if self.path == "/slow":
            time.sleep(1.5)
        body = "done {}\n".format(self.path).encode("ascii")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        """
        Keep the test output clean.
        """


def startSlowBackend(testCase):
    """
    Serve L{_SlowHandler} on 127.0.0.1 from a thread until the test ends.

    @return: the L{ThreadingHTTPServer}; C{server_address[1]} is its port.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    server.daemon_threads = True
    server.arrived = threading.Event()
    server.released = threading.Event()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    def stop():
        server.released.set()
        server.shutdown()
        server.server_close()
        thread.join(WAIT)

    testCase.addCleanup(stop)
    return server


class PluginTests(SynchronousTestCase):
    """
    Twisted finds the plugin, and importing proxyws leaves the reactor to
    twistd.
    """

    def runPython(self, code):
        """
        Run C{code} in a fresh Python with the checkout on the path.

        @return: its standard output.
        """
        result = subprocess.run(
            [sys.executable, "-c", code],
            env=subprocessEnvironment(),
            capture_output=True,
            text=True,
            timeout=WAIT * 3,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout

    def test_getPluginsFindsProxyws(self):
        """
        C{getPlugins(IServiceMaker)} yields a maker whose tapname is
        C{proxyws}, which builds its service from L{proxyws.tap}.
        """
        output = self.runPython(
            "import json\n"
            "from twisted.plugin import getPlugins\n"
            "from twisted.application.service import IServiceMaker\n"
            "makers = [m for m in getPlugins(IServiceMaker) if m.tapname == 'proxyws']\n"
            "print(json.dumps([[m.tapname, m.module, bool(m.description)] for m in makers]))\n"
        )
        self.assertEqual(json.loads(output), [["proxyws", "proxyws.tap", True]])

    def test_importsLeaveReactorAlone(self):
        """
        Importing the plugin module, L{proxyws.tap}, L{proxyws.service} and
        every other module of the package does not import
        C{twisted.internet.reactor}, so C{twistd -r} can still choose one.
        """
        output = self.runPython(
            "import importlib, json, pkgutil, sys\n"
            "import twisted.plugins.proxyws_plugin\n"
            "import proxyws, proxyws.tap, proxyws.service\n"
            "names = sorted('proxyws.' + m.name for m in pkgutil.iter_modules(proxyws.__path__))\n"
            "for name in names:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps([names, 'twisted.internet.reactor' in sys.modules]))\n"
        )
        names, reactorImported = json.loads(output)
        self.assertIn("proxyws.tap", names)
        self.assertIn("proxyws.service", names)
        self.assertIn("proxyws.httpproxy", names)
        self.assertFalse(reactorImported)


class ServeTests(SynchronousTestCase):
    """
    C{twistd -n --pidfile= proxyws --config FILE} serves requests and logs
    them.
    """

    def assertServes(self, arguments):
        """
        Start proxyws with twistd C{arguments} in front of the demo backend,
        make two requests on one connection, stop it, and check the
        responses and the access log file.
        """
        port, demoPort = freePort(), freePort()
        config = proxyConfigText(
            port, demoPort, server='access_log = "{directory}/access.log"', demo=True
        )
        proxy = startProxyProcess(self, config, arguments)
        proxy.waitForPort(port)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
        self.addCleanup(connection.close)
        headers = {"User-Agent": "proxyws-test/1.0", "Referer": "http://example.com/start"}
        connection.request("GET", "/", headers=headers)
        response = connection.getresponse()
        page = response.read()
        self.assertEqual(response.status, 200)
        self.assertIn(b"<h1>proxyws is working</h1>", page)
        self.assertIn(b"GET / HTTP/1.1", page)
        connection.request("GET", "/status/404?x=1", headers={"User-Agent": "proxyws-test/1.0"})
        response = connection.getresponse()
        missing = response.read()
        self.assertEqual((response.status, missing), (404, b"404 Not Found\n"))
        connection.close()

        status, _ = proxy.stop(signal.SIGTERM)
        self.assertEqual(status, 0, proxy.output())
        with open(os.path.join(proxy.directory, "access.log"), "rb") as f:
            lines = f.read().splitlines(True)
        self.assertEqual(len(lines), 2, lines)
        matches = [COMBINED_LINE.fullmatch(line) for line in lines]
        self.assertNotIn(None, matches, lines)
        self.assertEqual(
            [m.group("request", "status", "size", "referer", "agent") for m in matches],
            [
                (b"GET / HTTP/1.1", b"200", b"%d" % len(page),
                 b"http://example.com/start", b"proxyws-test/1.0"),
                (b"GET /status/404?x=1 HTTP/1.1", b"404", b"%d" % len(missing),
                 b"-", b"proxyws-test/1.0"),
            ],
        )
        self.assertNotIn("Traceback", proxy.output())

    def test_servesWithEpollReactor(self):
        """
        C{twistd -r epoll -n --pidfile= proxyws --config FILE} starts,
        relays requests, writes one combined-format line per request to the
        access log file, and exits 0 on SIGTERM.
        """
        self.assertServes(["-r", "epoll"])

    def test_servesWithDefaultReactor(self):
        """
        The same without C{-r}: twistd's default reactor.
        """
        self.assertServes([])


class BadConfigTests(SynchronousTestCase):
    """
    A config that does not load stops start-up with exit status 1 and one
    line naming the file, the key and what is wrong, and no traceback.
    """

    def assertRejected(self, configText, expected, path=None):
        """
        Run twistd on C{configText} and check its failure.

        @param expected: the expected last line of standard error, with
            C{{path}} standing for the config file's path.
        @param path: run on this path instead of writing C{configText}.
        """
        if path is None:
            path = os.path.join(temporaryDirectory(self), "bad.toml")
            with open(path, "w") as f:
                f.write(configText)
        result = runTwistd(self, ["-n", "--pidfile=", "proxyws", "--config", path])
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(
            result.stderr.rstrip("\n").split("\n")[-1],
            "proxyws: " + expected.format(path=path),
        )
        self.assertNotIn("Traceback", result.stdout + result.stderr)

    def test_unknownKey(self):
        """
        A misspelt key is named, with a did-you-mean suggestion.
        """
        self.assertRejected(
            '[[listen]]\nadress = "127.0.0.1"\nport = 0\n',
            "{path}: listen[0].adress: unknown key (did you mean 'address'?); "
            "known keys here are " + ", ".join(sorted(LISTEN_KEYS)),
        )

    def test_wrongType(self):
        """
        A value of the wrong type is shown with what was expected.
        """
        self.assertRejected(
            '[[listen]]\naddress = "127.0.0.1"\nport = "8080"\n',
            "{path}: listen[0].port: '8080' is not a port number from 0 to 65535",
        )

    def test_badRegularExpression(self):
        """
        A C{match} that does not compile is reported with the reason.
        """
        self.assertRejected(
            '[[listen]]\naddress = "127.0.0.1"\nport = 0\n\n'
            "[[route]]\nmatch = '^/(app'\nbackend = \"http://127.0.0.1:1/$1\"\n",
            "{path}: route[0].match: '^/(app' is not a valid regular expression: "
            "missing ), unterminated subpattern at position 2",
        )

    def test_groupReferenceBeyondGroups(self):
        """
        C{$3} in the backend of a C{match} with two groups is refused.
        """
        self.assertRejected(
            '[[listen]]\naddress = "127.0.0.1"\nport = 0\n\n'
            "[[route]]\nmatch = '^/(a)/(b)'\nbackend = \"http://127.0.0.1:1/$3\"\n",
            "{path}: route[0].backend: 'http://127.0.0.1:1/$3' uses $3 but 'match' "
            "has only 2 groups",
        )

    def test_unknownBackendScheme(self):
        """
        A backend URL whose scheme is not http, https, ws or wss is refused.
        """
        self.assertRejected(
            '[[listen]]\naddress = "127.0.0.1"\nport = 0\n\n'
            '[[route]]\npath = "/"\nbackend = "ftp://127.0.0.1/"\n',
            "{path}: route[0].backend: 'ftp://127.0.0.1/' is not a URL with scheme "
            "http, https, ws or wss",
        )

    def test_portInUse(self):
        """
        A port that another socket listens on stops start-up.
        """
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        self.assertRejected(
            '[[listen]]\naddress = "127.0.0.1"\nport = {}\n'.format(port),
            "{path}: listen[0]: cannot listen on 127.0.0.1 port %d: "
            "Address already in use" % (port,),
        )

    def test_unwritableAccessLog(self):
        """
        An access log in a directory that does not exist stops start-up.
        """
        self.assertRejected(
            '[server]\naccess_log = "/nonexistent-dir/x.log"\n\n'
            '[[listen]]\naddress = "127.0.0.1"\nport = 0\n',
            "{path}: server.access_log: cannot open '/nonexistent-dir/x.log' for "
            "appending: No such file or directory",
        )

    def test_missingConfigFile(self):
        """
        A config file that does not exist is named.
        """
        path = os.path.join(temporaryDirectory(self), "missing.toml")
        self.assertRejected(
            None, "{path}: cannot read the file: No such file or directory", path=path
        )

    def test_missingConfigOption(self):
        """
        Without C{--config}, twistd reports a usage error that names it
        (after the usage text, on standard output, as twistd does).
        """
        result = runTwistd(self, ["-n", "--pidfile=", "proxyws"])
        self.assertNotEqual(result.returncode, 0)
        lastLine = (result.stdout + result.stderr).rstrip("\n").split("\n")[-1]
        self.assertTrue(lastLine.endswith(": --config FILE.toml is required"), lastLine)
        self.assertNotIn("Traceback", result.stdout + result.stderr)


class GracefulStopTests(SynchronousTestCase):
    """
    SIGTERM and SIGINT stop accepting connections, let requests in flight
    finish within C{shutdown_timeout}, close the rest, and exit 0.
    """

    def startProxy(self, server=""):
        """
        Start a backend from L{startSlowBackend} and proxyws in front of it.

        @return: C{(backend, proxy, proxy port)}.
        """
        backend = startSlowBackend(self)
        port = freePort()
        config = proxyConfigText(port, backend.server_address[1], server=server)
        proxy = startProxyProcess(self, config)
        proxy.waitForPort(port)
        return backend, proxy, port

    def test_sigtermLetsRequestsFinish(self):
        """
        After SIGTERM a request in flight still completes, new connections
        are refused at once, and the process exits 0 soon after the request
        is done, long before the 30-second default deadline.
        """
        backend, proxy, port = self.startProxy()
        result = {}

        def get():
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
            try:
                connection.request("GET", "/slow")
                response = connection.getresponse()
                result["response"] = (response.status, response.read())
            except Exception as e:
                result["error"] = e
            finally:
                connection.close()

        client = threading.Thread(target=get, daemon=True)
        client.start()
        self.assertTrue(backend.arrived.wait(WAIT), "the request did not reach the backend")
        time.sleep(0.3)
        signalled = time.monotonic()
        proxy.process.send_signal(signal.SIGTERM)

        deadline = signalled + 1.0
        while not refused(port):
            self.assertLess(time.monotonic(), deadline, "still accepting 1s after SIGTERM")
            time.sleep(0.02)

        client.join(WAIT)
        self.assertFalse(client.is_alive(), "the slow request did not complete")
        self.assertEqual(result, {"response": (200, b"done /slow\n")})
        status = proxy.waitForExit()
        elapsed = time.monotonic() - signalled
        self.assertEqual(status, 0, proxy.output())
        self.assertLess(elapsed, 5.0)
        self.assertNotIn("Traceback", proxy.output())

    def test_sigintClosesIdleConnectionsAndExits(self):
        """
        SIGINT stops proxyws too: an idle keep-alive client connection is
        closed and the process exits 0 at once.
        """
        _, proxy, port = self.startProxy()
        idle = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.addCleanup(idle.close)
        idle.sendall(b"GET /quick HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = b""
        while b"done /quick\n" not in head:
            data = idle.recv(65536)
            self.assertTrue(data, "closed before the response: {!r}".format(head))
            head += data
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)

        status, elapsed = proxy.stop(signal.SIGINT)
        self.assertEqual(status, 0, proxy.output())
        self.assertLess(elapsed, 3.0)
        self.assertEqual(receiveUntilClosed(idle), b"")
        self.assertNotIn("Traceback", proxy.output())

    def test_shutdownTimeoutClosesStuckRequests(self):
        """
        With C{shutdown_timeout = 1}, a request whose backend never answers
        is cut off about a second after SIGTERM, and the process exits 0.
        """
        backend, proxy, port = self.startProxy(server="shutdown_timeout = 1")
        stuck = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.addCleanup(stuck.close)
        stuck.sendall(b"GET /never HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.assertTrue(backend.arrived.wait(WAIT), "the request did not reach the backend")

        status, elapsed = proxy.stop(signal.SIGTERM)
        self.assertEqual(status, 0, proxy.output())
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, 3.0)
        self.assertEqual(receiveUntilClosed(stuck, timeout=1.0), b"")
        self.assertNotIn("Traceback", proxy.output())


class WebSocketStopTests(SynchronousTestCase):
    """
    SIGTERM to twistd closes open websockets with 1001 on both legs.
    """

    def test_sigtermClosesWebSockets(self):
        """
        A client with an open websocket through the proxy gets close 1001
        when twistd gets SIGTERM, and the process exits 0.
        """
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        port, demoPort = freePort(), freePort()
        proxy = startProxyProcess(self, proxyConfigText(port, demoPort, demo=True))
        proxy.waitForPort(port)
        with connect("ws://127.0.0.1:{}/ws".format(port), open_timeout=WAIT) as client:
            client.send("hello")
            self.assertEqual(client.recv(timeout=WAIT), "hello")
            proxy.process.send_signal(signal.SIGTERM)
            with self.assertRaises(ConnectionClosed) as closed:
                client.recv(timeout=WAIT)
        self.assertEqual(closed.exception.rcvd.code, 1001)
        self.assertEqual(closed.exception.rcvd.reason, "proxyws: server shutting down")
        self.assertEqual(proxy.waitForExit(), 0, proxy.output())


class LogRotationTests(SynchronousTestCase):
    """
    SIGUSR1 reopens the access log file, for logrotate.
    """

    def assertRotates(self, server="", processes=1):
        """
        Lines before SIGUSR1 stay in the moved file, lines after it go to a
        new file at the configured path.
        """
        port, demoPort = freePort(), freePort()
        proxy = startProxyProcess(
            self,
            proxyConfigText(
                port,
                demoPort,
                server='access_log = "{directory}/access.log"\n' + server,
                demo=True,
            ),
        )
        proxy.waitForPort(port)
        path = os.path.join(proxy.directory, "access.log")

        def get(target):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
            connection.request("GET", target)
            self.assertEqual(connection.getresponse().status, 200)
            connection.close()

        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                get("/headers?before")
                break
            except OSError:
                time.sleep(0.05)

        def read(name):
            try:
                with open(name, "rb") as f:
                    return f.read()
            except FileNotFoundError:
                return b""

        # A request's line is written just after its response.
        waitFor(lambda: b"/headers?before" in read(path))
        os.rename(path, path + ".1")
        proxy.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + WAIT
        while (
            proxy.output().count("access log reopened") < processes
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)
        get("/headers?after")
        new = waitFor(lambda: read(path))
        old = read(path + ".1")
        self.assertIn(b"/headers?before", old)
        self.assertNotIn(b"/headers?after", old)
        self.assertIn(b"/headers?after", new)
        self.assertEqual(proxy.stop(signal.SIGTERM)[0], 0, proxy.output())

    def test_sigusr1ReopensAccessLog(self):
        """
        One process: SIGUSR1 reopens the access log.
        """
        self.assertRotates()

    def test_sigusr1ReachesWorkers(self):
        """
        With workers, the parent passes SIGUSR1 on to each of them.
        """
        # The parent serves the demo backend with an access log of its own.
        self.assertRotates("workers = 2\n", processes=3)


class LogLevelTests(SynchronousTestCase):
    """
    C{[server] log_level} sets the least severe of proxyws's messages that
    twistd writes; the default is C{"info"}.
    """

    def websocketOutput(self, server=""):
        """
        Relay one websocket through a twistd proxyws, stop it, and return
        what it wrote.
        """
        from websockets.sync.client import connect

        port, demoPort = freePort(), freePort()
        proxy = startProxyProcess(self, proxyConfigText(port, demoPort, server=server, demo=True))
        proxy.waitForPort(port)
        with connect("ws://127.0.0.1:{}/ws".format(port), open_timeout=WAIT) as client:
            client.send("hello")
            self.assertEqual(client.recv(timeout=WAIT), "hello")
        waitFor(lambda: "\" 101 " in proxy.output())
        proxy.process.send_signal(signal.SIGTERM)
        self.assertEqual(proxy.waitForExit(), 0, proxy.output())
        return proxy.output()

    def test_defaultInfo(self):
        """
        By default a websocket's debug messages are not written; its info
        message (why it closed) is.
        """
        output = self.websocketOutput()
        self.assertIn("[proxyws.wsrelay#info] websocket /ws", output)
        self.assertNotIn("#debug]", output)

    def test_debug(self):
        """
        With C{log_level = "debug"} the debug messages are written too.
        """
        output = self.websocketOutput('log_level = "debug"')
        self.assertIn("[proxyws.wsproxy#debug] websocket /ws: serving URL", output)

    def test_warn(self):
        """
        With C{log_level = "warn"} neither debug nor info messages of
        proxyws are written.
        """
        output = self.websocketOutput('log_level = "warn"')
        self.assertNotIn("[proxyws.wsproxy#", output)
        self.assertNotIn("[proxyws.wsrelay#", output)
