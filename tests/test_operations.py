"""
Operations of a running C{twistd proxyws}, as an operator meets them: SIGHUP
reloads in place (one process, and with workers), and the access log has one
line per request and per websocket, at a graceful stop too.
"""

import http.client
import os
import signal
import socket
import time

from twisted.trial.unittest import SynchronousTestCase
from websockets.sync.client import connect

from .helpers import freePort
from .test_twistd import WAIT, startProxyProcess, waitFor

CONFIG = (
    "[server]\n{server}\n"
    '[[listen]]\naddress = "127.0.0.1"\nport = {port}\n\n'
    '[demo]\naddress = "127.0.0.1"\nport = {demo}\n\n'
    '[[route]]\npath = "{path}"\nbackend = "http://127.0.0.1:{demo}/"\n'
)


def status(port, target):
    """
    @return: the status of a GET of C{target} on a fresh connection.
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


class ReloadSignalTests(SynchronousTestCase):
    """
    SIGHUP reloads the config in place.
    """

    def reloadWhileOpen(self, server="", applied=1):
        """
        Start proxyws routing C{/old/}, open a websocket, change the route
        to C{/new/} and send SIGHUP: the new route serves, the old one is
        gone, and the websocket (whose route stayed) keeps echoing.
        """
        port, demo = freePort(), freePort()
        text = lambda path: CONFIG.format(server=server, port=port, demo=demo, path=path)
        proxy = startProxyProcess(self, text("/"))
        proxy.waitForPort(port)
        waitFor(lambda: status(port, "/headers") == 200)
        with connect("ws://127.0.0.1:{}/ws".format(port), open_timeout=WAIT) as client:
            with open(proxy.configPath, "w") as f:
                # Routes are tried in order: the new one goes before "/".
                extra = '[[route]]\npath = "/extra/"\nbackend = "http://127.0.0.1:{}/"\n\n'
                f.write(text("/").replace("[[route]]", extra.format(demo) + "[[route]]", 1))
            proxy.process.send_signal(signal.SIGHUP)
            # Each process that serves logs the change once it applied it.
            waitFor(
                lambda: proxy.output().count("reload: routes +1 -0 ~0") >= applied, WAIT * 3
            )
            deadline = time.monotonic() + WAIT * 3
            # Every worker has it once each of a few requests sees it.
            while time.monotonic() < deadline:
                if all(status(port, "/extra/headers") == 200 for _ in range(20)):
                    break
                time.sleep(0.05)
            self.assertTrue(all(status(port, "/extra/headers") == 200 for _ in range(20)))
            client.send("still open")
            self.assertEqual(client.recv(timeout=WAIT), "still open")
        self.assertIsNone(proxy.process.poll())
        self.assertEqual(proxy.stop(signal.SIGTERM)[0], 0, proxy.output())
        return proxy

    def test_sighup(self):
        """
        One process: SIGHUP reloads, and the process lives on.
        """
        proxy = self.reloadWhileOpen()
        self.assertIn("reload: routes +1 -0 ~0", proxy.output())

    def test_sighupWithWorkers(self):
        """
        With workers, the parent checks the config once and every worker
        applies it.
        """
        proxy = self.reloadWhileOpen("workers = 2\n", applied=2)
        output = proxy.output()
        self.assertIn("reload sent to the workers", output)
        self.assertEqual(output.count("reload: routes +1 -0 ~0"), 2, output)

    def test_badConfigOnSighup(self):
        """
        A config that does not load: every problem is logged, and the
        config in force keeps serving.
        """
        port, demo = freePort(), freePort()
        good = CONFIG.format(server="", port=port, demo=demo, path="/")
        proxy = startProxyProcess(self, good)
        proxy.waitForPort(port)
        waitFor(lambda: status(port, "/headers") == 200)
        with open(proxy.configPath, "w") as f:
            f.write(good + '[[route]]\npath = "/x"\nbackend = "htp://x"\n')
        proxy.process.send_signal(signal.SIGHUP)
        waitFor(lambda: "reload refused" in proxy.output())
        self.assertIn("route[1].backend: 'htp://x' is not a URL", proxy.output())
        self.assertEqual(status(port, "/headers"), 200)
        self.assertEqual(proxy.stop(signal.SIGTERM)[0], 0, proxy.output())


class StopLogTests(SynchronousTestCase):
    """
    Every websocket open at a graceful stop leaves its access-log line in a
    log file.
    """

    def test_manyWebSocketsAtStop(self):
        """
        200 websockets open at SIGTERM: 200 lines with status 101.
        """
        port, demo = freePort(), freePort()
        proxy = startProxyProcess(
            self,
            CONFIG.format(
                server='access_log = "{directory}/access.log"\n', port=port, demo=demo, path="/"
            ),
        )
        proxy.waitForPort(port)
        waitFor(lambda: status(port, "/headers") == 200)
        sockets = []
        self.addCleanup(lambda: [s.close() for s in sockets])
        upgrade = (
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            s.sendall(upgrade)
            sockets.append(s)
        for s in sockets:
            self.assertTrue(s.recv(12).startswith(b"HTTP/1.1 101"))
        proxy.process.send_signal(signal.SIGTERM)
        for s in sockets:
            # Answer the proxy's close frame, as a client does.
            s.settimeout(WAIT)
            while s.recv(65536):
                s.sendall(b"\x88\x82\x00\x00\x00\x00\x03\xe9")
        self.assertEqual(proxy.waitForExit(), 0, proxy.output())
        with open(os.path.join(proxy.directory, "access.log"), "rb") as f:
            lines = f.read().splitlines()
        self.assertEqual(len([line for line in lines if b'"GET /ws HTTP/1.1" 101 ' in line]), 200)
        self.assertNotIn("write failed", proxy.output())
