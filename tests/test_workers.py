"""
C{[server] workers = N}: worker processes under one supervising parent.
"""

import http.client
import os
import re
import signal
import socket
import time

from twisted.trial.unittest import SynchronousTestCase

from .helpers import freePort
from .test_twistd import WAIT, proxyConfigText, startProxyProcess, waitFor

_COMBINED = re.compile(
    rb'^127\.0\.0\.1 - - \[[^\]]+\] "GET /headers\?n=\d+ HTTP/1\.1" 200 \d+ "-" "-"$'
)


def children(pid):
    """
    The process ids of the children of C{pid}.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/{}/stat".format(entry)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return sorted(found)


def alive(pid):
    """
    Whether process C{pid} exists and is not a zombie.
    """
    try:
        with open("/proc/{}/stat".format(pid)) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def get(port, path):
    """
    One GET through the proxy on a new connection, without a User-Agent.

    @return: C{(status, body)}.
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class WorkerTests(SynchronousTestCase):
    """
    Two workers serve one listener; the parent restarts a dead worker and
    stops them all gracefully.
    """

    def test_workersServeRestartAndStop(self):
        """
        With C{workers = 2} there are two worker processes; every request is
        answered and logged in one whole line; a killed worker is restarted
        and the parent says so; SIGTERM to the parent stops every worker and
        the parent exits 0.
        """
        port, demoPort = freePort(), freePort()
        proxy = startProxyProcess(
            self,
            proxyConfigText(
                port,
                demoPort,
                server='workers = 2\naccess_log = "{directory}/access.log"',
                demo=True,
            ),
        )
        proxy.waitForPort(port)
        workers = waitFor(lambda: len(children(proxy.pid)) == 2 and children(proxy.pid))
        for n in range(40):
            status, body = get(port, "/headers?n={}".format(n))
            self.assertEqual(status, 200)

        # A worker writes a request's line just after its response: wait
        # for the lines before killing one.
        def logged():
            try:
                with open(os.path.join(proxy.directory, "access.log"), "rb") as f:
                    return f.read().count(b"\n")
            except FileNotFoundError:
                return 0

        waitFor(lambda: logged() == 40)
        os.kill(workers[0], signal.SIGKILL)
        restarted = waitFor(
            lambda: len(children(proxy.pid)) == 2
            and workers[0] not in children(proxy.pid)
            and children(proxy.pid)
        )
        self.assertIn(workers[1], restarted)
        waitFor(lambda: "worker 0 exited unexpectedly" in proxy.output())
        for n in range(40, 50):
            self.assertEqual(get(port, "/headers?n={}".format(n))[0], 200)

        status, seconds = proxy.stop(signal.SIGTERM)
        self.assertEqual(status, 0, proxy.output())
        waitFor(lambda: not any(alive(pid) for pid in restarted))
        with open(os.path.join(proxy.directory, "access.log"), "rb") as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 50)
        for line in lines:
            self.assertRegex(line, _COMBINED)

    def test_workersAuto(self):
        """
        C{workers = "auto"} starts one worker per core.
        """
        port, demoPort = freePort(), freePort()
        proxy = startProxyProcess(
            self, proxyConfigText(port, demoPort, server='workers = "auto"', demo=True)
        )
        proxy.waitForPort(port)
        waitFor(lambda: len(children(proxy.pid)) == (os.cpu_count() or 1))
        self.assertEqual(get(port, "/headers")[0], 200)
        status, seconds = proxy.stop(signal.SIGINT)
        self.assertEqual(status, 0, proxy.output())

    def test_workerDiesWithParent(self):
        """
        A parent killed outright takes its workers with it.
        """
        port, demoPort = freePort(), freePort()
        proxy = startProxyProcess(
            self, proxyConfigText(port, demoPort, server="workers = 2", demo=True)
        )
        proxy.waitForPort(port)
        workers = waitFor(lambda: len(children(proxy.pid)) == 2 and children(proxy.pid))
        proxy.kill()
        waitFor(lambda: not any(alive(pid) for pid in workers))

    def test_workersTakeRepeatedSignals(self):
        """
        A worker that gets SIGTERM twice (its own, and its parent's when the
        whole group is signalled) stops once, cleanly.
        """
        port, demoPort = freePort(), freePort()
        proxy = startProxyProcess(
            self,
            proxyConfigText(
                port, demoPort, server="workers = 2\nshutdown_timeout = 1", demo=True
            ),
        )
        proxy.waitForPort(port)
        workers = waitFor(lambda: len(children(proxy.pid)) == 2 and children(proxy.pid))
        # The sockets listen before anything runs: wait until requests are
        # answered, so that every process has its signal handlers.
        for n in range(10):
            self.assertEqual(get(port, "/headers")[0], 200)
        # Endless event streams keep the workers' graceful stops going while
        # the second signal comes.
        streams = []
        for n in range(8):
            stream = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            self.addCleanup(stream.close)
            stream.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            stream.recv(100)
            streams.append(stream)
        for pid in workers:
            os.kill(pid, signal.SIGTERM)
        time.sleep(0.2)
        status, seconds = proxy.stop(signal.SIGTERM)
        self.assertEqual(status, 0, proxy.output())
        self.assertNotIn("ReactorNotRunning", proxy.output())
        self.assertNotIn("Traceback", proxy.output())

    def test_restartedWorkerKeepsCheckedConfig(self):
        """
        A worker restarted after the config file changed serves the config
        the parent checked at start, not the changed file.
        """
        port, demoPort = freePort(), freePort()
        proxy = startProxyProcess(
            self, proxyConfigText(port, demoPort, server="workers = 2", demo=True)
        )
        proxy.waitForPort(port)
        workers = waitFor(lambda: len(children(proxy.pid)) == 2 and children(proxy.pid))
        with open(proxy.configPath, "w") as f:
            f.write("this is = not [ a valid config\n")
        os.kill(workers[0], signal.SIGKILL)
        waitFor(
            lambda: len(children(proxy.pid)) == 2
            and workers[0] not in children(proxy.pid)
        )
        for n in range(10):
            self.assertEqual(get(port, "/headers?n={}".format(n))[0], 200)
        self.assertNotIn("not valid TOML", proxy.output())
        self.assertEqual(proxy.stop(signal.SIGTERM)[0], 0, proxy.output())


class EarlyReloadTests(SynchronousTestCase):
    """
    A reload that reaches a worker before it started serving.
    """

    def test_reloadBeforeStart(self):
        """
        A worker whose standard input holds its config and, already, a
        reload (a SIGHUP soon after the parent started it) starts on the
        first and then applies the second.
        """
        import subprocess
        import sys
        import tempfile

        from proxyws.workers import netstring

        from .helpers import subprocessEnvironment

        port = freePort()
        directory = tempfile.mkdtemp()
        self.addCleanup(__import__("shutil").rmtree, directory, True)
        path = os.path.join(directory, "proxy.toml")
        listen = '[[listen]]\naddress = "127.0.0.1"\nport = {}\n\n'.format(port)
        first = listen + '[[route]]\npath = "/old/"\nbackend = "http://127.0.0.1:9/"\n'
        second = listen + '[[route]]\npath = "/new/"\nbackend = "http://127.0.0.1:9/"\n'
        with open(path, "w") as f:
            f.write(first)
        worker = subprocess.Popen(
            [sys.executable, "-m", "proxyws.workers", path, "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=subprocessEnvironment())
        self.addCleanup(worker.wait)
        self.addCleanup(worker.kill)
        worker.stdin.write(netstring(first) + netstring(second))
        worker.stdin.flush()
        # The old route is gone (404) and the new one is there (its backend
        # refuses: 502) once the reload is applied.
        waitFor(lambda: _statusOrNone(port, "/new/x") == 502)
        self.assertEqual(get(port, "/old/x")[0], 404)
        self.assertIsNone(worker.poll())


def _statusOrNone(port, path):
    """
    @return: the status of a GET, or L{None} when nothing listens yet.
    """
    try:
        return get(port, path)[0]
    except OSError:
        return None
