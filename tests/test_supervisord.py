"""
proxyws under a real supervisord, as an operator runs it: the program
section of C{conf/supervisord-proxyws.conf} as shipped (paths aside) starts
proxyws on a config with real backends, C{supervisorctl signal HUP} reloads
it in place with a websocket open, C{supervisorctl stop} closes that
websocket with 1001 and ends in a clean exit, and a crash is followed by a
restart.  The conf files (supervisord, systemd, logrotate, the example
config) are checked against each other and the contract.

supervisord runs in the foreground (C{supervisord -n}) in a temporary
directory, with its control socket there, and is stopped (with proxyws) in
cleanup.  The backends are threads of the test process.
"""

import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import xmlrpc.client
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from supervisor.xmlrpc import SupervisorTransport
from twisted.trial.unittest import SynchronousTestCase
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import serve

from proxyws.config import loadConfig
from proxyws.workers import KILL_MARGIN

from .helpers import ROOT, freePort, subprocessEnvironment
from .test_twistd import temporaryDirectory, waitFor

# Seconds any one wait may take before the test fails: generous, as these
# tests start several processes on a machine that may be busy.
WAIT = 30.0

# The shipped files.
SUPERVISOR_PROGRAM = os.path.join(ROOT, "conf", "supervisord-proxyws.conf")
SYSTEMD_UNIT = os.path.join(ROOT, "conf", "proxyws.service")
LOGROTATE = os.path.join(ROOT, "conf", "logrotate-proxyws")
EXAMPLE = os.path.join(ROOT, "conf", "example.toml")

# What the shipped program section (its comments left out) names -> what
# the tests run instead.
# Each must be in the file exactly once, so that a change to the file that
# the tests would not follow fails them.
PROGRAM_PATHS = [
    ("/opt/proxyws/venv/bin/twistd", "{bin}/twistd"),
    ("/etc/proxyws/proxyws.toml", "{directory}/proxyws.toml"),
    ("/var/log/proxyws/proxyws.log", "{directory}/proxyws.log"),
    # The tests run as whoever runs them.
    ("user=proxyws\n", ""),
]

# The rest of a supervisord.conf: a control socket in the directory, and
# supervisord's own log and pid file there.
SUPERVISORD = """\
[unix_http_server]
file={directory}/supervisor.sock

[supervisord]
logfile={directory}/supervisord.log
pidfile={directory}/supervisord.pid
childlogdir={directory}
nodaemon=true

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{directory}/supervisor.sock

"""

# The proxy's config: a websocket route to the echo backend and an HTTP
# route to one of two named backends.
PROXY = """\
[server]
access_log = "{directory}/access.log"
shutdown_timeout = 10

[[listen]]
address = "127.0.0.1"
port = {port}

[[route]]
path = "/ws/"
backend = "ws://127.0.0.1:{echo}/"

[[route]]
path = "/app/"
backend = "http://127.0.0.1:{app}/"
"""


def programSection(directory):
    """
    The shipped program section, running this checkout's C{twistd} on the
    config in C{directory}.
    """
    with open(SUPERVISOR_PROGRAM) as f:
        text = f.read()
    text = text[text.index("[program:proxyws]") :]
    binaries = os.path.dirname(sys.executable)
    for shipped, tested in PROGRAM_PATHS:
        if text.count(shipped) != 1:
            raise AssertionError("{!r} is not once in {}".format(shipped, SUPERVISOR_PROGRAM))
        text = text.replace(shipped, tested.format(bin=binaries, directory=directory))
    return text


class NamedHandler(BaseHTTPRequestHandler):
    """
    Answers every GET with its server's name and the path it got.
    """

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        """
        Answer C{NAME PATH}.
        """
        body = "{} {}".format(self.server.name, self.path).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        """
        Log nothing.
        """


def startNamedBackend(testCase, name):
    """
    Serve L{NamedHandler} as C{name} on 127.0.0.1 in a thread until the test
    ends.

    @return: its port.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), NamedHandler)
    server.daemon_threads = True
    server.name = name
    threading.Thread(target=server.serve_forever, daemon=True).start()
    testCase.addCleanup(server.server_close)
    testCase.addCleanup(server.shutdown)
    return server.server_address[1]


def startEchoBackend(testCase):
    """
    A websocket server on 127.0.0.1 echoing every message, in a thread
    until the test ends.

    @return: its port.
    """

    def echo(websocket):
        for message in websocket:
            websocket.send(message)

    server = serve(echo, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    testCase.addCleanup(server.shutdown)
    return server.socket.getsockname()[1]


def get(port, target):
    """
    @return: the body of a GET of C{target} answered 200 on a fresh
        connection, or L{None} when there is no such answer (yet).
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        body = response.read()
        return body.decode() if response.status == 200 else None
    except OSError:
        return None
    finally:
        connection.close()


class Supervisor:
    """
    A C{supervisord -n} subprocess running the shipped program section.

    @ivar directory: its temporary directory (configs, socket, logs).
    @ivar process: the L{subprocess.Popen}.
    """

    def __init__(self, testCase, proxyConfig):
        """
        Write C{proxyConfig} and a supervisord.conf to a temporary
        directory and start supervisord on them; it is stopped, with
        proxyws, when the test ends.

        @param proxyConfig: the proxy's config text; C{{directory}} in it
            is the directory.
        """
        self.directory = directory = temporaryDirectory(testCase)
        self.writeConfig(proxyConfig)
        self._conf = os.path.join(directory, "supervisord.conf")
        with open(self._conf, "w") as f:
            f.write(SUPERVISORD.format(directory=directory) + programSection(directory))
        self._server = xmlrpc.client.ServerProxy(
            "http://127.0.0.1",
            transport=SupervisorTransport(
                None, None, "unix://" + os.path.join(directory, "supervisor.sock")
            ),
        )
        with open(os.path.join(directory, "supervisord.out"), "wb") as output:
            self.process = subprocess.Popen(
                [self._binary("supervisord"), "-n", "-c", self._conf],
                env=subprocessEnvironment(),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=directory,
            )
        testCase.addCleanup(self.stop)

    @staticmethod
    def _binary(name):
        return os.path.join(os.path.dirname(sys.executable), name)

    def writeConfig(self, text):
        """
        Write the proxy's config file.
        """
        with open(os.path.join(self.directory, "proxyws.toml"), "w") as f:
            f.write(text.replace("{directory}", self.directory))

    def ctl(self, *arguments):
        """
        Run C{supervisorctl -c FILE ARGUMENTS}.

        @return: C{(exit status, output)}.
        """
        done = subprocess.run(
            [self._binary("supervisorctl"), "-c", self._conf, *arguments],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=WAIT * 3,
        )
        return done.returncode, done.stdout + done.stderr

    def info(self):
        """
        @return: supervisord's C{getProcessInfo} of the program, or L{None}
            while supervisord does not answer.
        """
        try:
            return self._server.supervisor.getProcessInfo("proxyws")
        except (OSError, xmlrpc.client.Fault):
            return None

    def state(self):
        """
        @return: the program's state as C{supervisorctl status} shows it
            (C{RUNNING}, C{STOPPED}, C{FATAL}, ...), or L{None}.
        """
        _, output = self.ctl("status", "proxyws")
        match = re.match(r"proxyws\s+([A-Z]+)", output)
        return match.group(1) if match else None

    def log(self, name):
        """
        @return: the text of C{name} in the directory (C{supervisord.log},
            C{proxyws.log}), or C{""}.
        """
        try:
            with open(os.path.join(self.directory, name), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def logs(self):
        """
        @return: supervisord's log and the program's, for failure messages.
        """
        return "supervisord.log:\n{}\nproxyws.log:\n{}".format(
            self.log("supervisord.log"), self.log("proxyws.log"))

    def stop(self):
        """
        Stop supervisord (and with it proxyws) with SIGTERM; kill both when
        that takes too long.
        """
        if self.process.poll() is not None:
            return
        info = self.info()
        self.process.terminate()
        try:
            self.process.wait(WAIT * 2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(WAIT)
            if info and info["pid"]:
                try:
                    os.kill(info["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass


class SupervisordTests(SynchronousTestCase):
    """
    proxyws as a supervisord program.
    """

    def startSupervised(self):
        """
        Start both named backends, the echo backend, and supervisord running
        proxyws with C{/app/} routed to the backend named C{one}; wait until
        proxyws serves it.

        @return: C{(supervisor, proxy port, config text with C{{app}} left
            to fill)}.
        """
        one, two = startNamedBackend(self, "one"), startNamedBackend(self, "two")
        self.apps = {"one": one, "two": two}
        port = freePort()
        text = PROXY.replace("{port}", str(port)).replace("{echo}", str(startEchoBackend(self)))
        supervisor = Supervisor(self, text.replace("{app}", str(one)))
        try:
            waitFor(lambda: get(port, "/app/x") == "one /x", WAIT)
            waitFor(lambda: supervisor.state() == "RUNNING", WAIT)
        except AssertionError:
            self.fail("proxyws did not start under supervisord:\n" + supervisor.logs())
        return supervisor, port, text

    def test_startReloadStop(self):
        """
        Started by supervisord, proxyws serves a request and a websocket;
        C{supervisorctl signal HUP} reloads it in place (the changed route
        is served, the process and the websocket stay); C{supervisorctl
        stop} closes the websocket with 1001, and supervisord reports a
        clean exit.
        """
        supervisor, port, text = self.startSupervised()
        pid = supervisor.info()["pid"]
        with connect("ws://127.0.0.1:{}/ws/echo".format(port), open_timeout=WAIT) as client:
            client.send("before")
            self.assertEqual(client.recv(timeout=WAIT), "before")

            supervisor.writeConfig(text.replace("{app}", str(self.apps["two"])))
            status, output = supervisor.ctl("signal", "HUP", "proxyws")
            self.assertEqual((status, output.strip()), (0, "proxyws: signalled"))
            waitFor(lambda: get(port, "/app/x") == "two /x", WAIT)
            self.assertEqual(supervisor.info()["pid"], pid)
            client.send("after the reload")
            self.assertEqual(client.recv(timeout=WAIT), "after the reload")

            status, output = supervisor.ctl("stop", "proxyws")
            self.assertEqual((status, output.strip()), (0, "proxyws: stopped"), supervisor.logs())
            with self.assertRaises(ConnectionClosed):
                client.recv(timeout=WAIT)
            self.assertEqual(
                (client.close_code, client.close_reason), (1001, "proxyws: server shutting down")
            )
        self.assertEqual(supervisor.state(), "STOPPED")
        info = supervisor.info()
        self.assertEqual((info["statename"], info["exitstatus"]), ("STOPPED", 0))
        self.assertIn("stopped: proxyws (exit status 0)", supervisor.log("supervisord.log"))
        self.assertIn("reload: routes +1 -1 ~0", supervisor.log("proxyws.log"))
        with open(os.path.join(supervisor.directory, "access.log")) as f:
            self.assertIn('"GET /ws/echo HTTP/1.1" 101 ', f.read())

    def test_crashRestarted(self):
        """
        A proxyws that dies (SIGKILL) is started again by supervisord, and
        serves again.
        """
        supervisor, port, _ = self.startSupervised()
        pid = supervisor.info()["pid"]
        os.kill(pid, signal.SIGKILL)
        waitFor(lambda: (supervisor.info() or {}).get("pid") not in (None, 0, pid), WAIT)
        waitFor(lambda: get(port, "/app/x") == "one /x", WAIT)
        waitFor(lambda: supervisor.state() == "RUNNING", WAIT)
        self.assertIn("exited: proxyws (terminated by SIGKILL", supervisor.log("supervisord.log"))


def unitSettings(path):
    """
    The settings of a systemd unit file.

    @return: a L{dict} of each key to the list of its values, in order.
    """
    settings = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", ";", "[")):
                key, _, value = line.partition("=")
                settings.setdefault(key, []).append(value)
    return settings


class ConfFileTests(SynchronousTestCase):
    """
    The conf files agree with each other, with the example config and with
    the contract.
    """

    def test_stopTimesMatch(self):
        """
        supervisord's C{stopwaitsecs} and systemd's C{TimeoutStopSec} are
        the same, and leave the example config's C{shutdown_timeout} and the
        time a worker is given past it room to finish.
        """
        program = unitSettings(SUPERVISOR_PROGRAM)
        unit = unitSettings(SYSTEMD_UNIT)
        shutdown = loadConfig(EXAMPLE).server.shutdownTimeout
        stopWait = float(program["stopwaitsecs"][0])
        self.assertEqual(unit["TimeoutStopSec"], program["stopwaitsecs"])
        self.assertGreaterEqual(stopWait, shutdown + KILL_MARGIN + 5)

    def test_commandsAndSignals(self):
        """
        Both run the contract's command in the foreground and stop it with
        SIGTERM; systemd reloads with SIGHUP; logrotate asks for a reopen
        with SIGUSR1.
        """
        command = "twistd -n --pidfile= proxyws --config /etc/proxyws/proxyws.toml"
        program = unitSettings(SUPERVISOR_PROGRAM)
        unit = unitSettings(SYSTEMD_UNIT)
        self.assertTrue(program["command"][0].endswith("/bin/" + command))
        self.assertEqual(program["stopsignal"], ["TERM"])
        self.assertTrue(unit["ExecStart"][0].endswith("/bin/" + command))
        self.assertEqual(unit["Type"], ["simple"])
        self.assertEqual(unit["KillSignal"], ["SIGTERM"])
        self.assertEqual(unit["ExecReload"][-1], "/bin/kill -HUP $MAINPID")
        with open(LOGROTATE) as f:
            rotate = f.read()
        self.assertIn("kill -USR1", rotate)
        self.assertIn("supervisorctl signal USR1 proxyws", rotate)
