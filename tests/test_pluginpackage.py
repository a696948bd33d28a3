"""
A third-party plugin as users install it: the example package
C{examples/proxyws-hello-plugin} and proxyws installed with pip into a fresh
virtualenv, and C{twistd proxyws} from that virtualenv serving a config that
uses the plugin.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource

from .helpers import ROOT, freePort, rawRequest, startBackend
from .wsbackends import waitUntil

EXAMPLE = os.path.join(ROOT, "examples", "proxyws-hello-plugin")

CONFIG = """
[[listen]]
address = "127.0.0.1"
port = {port}

[[route]]
path = "/"
backend = "http://127.0.0.1:{backend}/"
plugins = [{{ name = "{name}", greeting = "bonjour", answer_path = "/hello" }}]
"""


class Greeted(Resource):
    """
    Answers with the C{X-Hello} header it got.
    """

    isLeaf = True

    def render(self, request):
        """
        Echo C{X-Hello}.
        """
        return b"backend got " + (request.getHeader(b"X-Hello") or b"nothing")


def install(directory):
    """
    Make a virtualenv in C{directory} and install proxyws (this checkout)
    and the example plugin into it with pip.

    @return: the virtualenv's C{bin} folder.
    """
    venv = os.path.join(directory, "venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    bin = os.path.join(venv, "bin")
    # Copies, so that pip builds from clean trees (no build/ folders left
    # in the checkout).
    source = os.path.join(directory, "src")
    shutil.copytree(
        ROOT, source,
        ignore=shutil.ignore_patterns(".git", "*.egg-info", "__pycache__", "build", "bench"),
    )
    subprocess.run(
        [os.path.join(bin, "pip"), "install", "-q", "--disable-pip-version-check", source,
         os.path.join(source, "examples", "proxyws-hello-plugin")],
        check=True,
        capture_output=True,
    )
    return bin


class ThirdPartyPluginTests(TestCase):
    """
    The example package, installed into a fresh virtualenv, used by
    C{twistd proxyws}.
    """

    timeout = 600

    def setUp(self):
        self.directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.directory, True)

    def twistd(self, bin, configText):
        """
        Write C{configText} and start C{twistd proxyws} on it from the
        virtualenv, stopped at cleanup.

        @return: the process (a L{subprocess.Popen}).
        """
        path = os.path.join(self.directory, "proxy.toml")
        with open(path, "w") as f:
            f.write(configText)
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        process = subprocess.Popen(
            [os.path.join(bin, "twistd"), "-n", "--pidfile=", "proxyws", "--config", path],
            cwd=self.directory,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.addCleanup(self.stop, process)
        return process

    def stop(self, process):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        process.stdout.close()
        process.stderr.close()

    @inlineCallbacks
    def test_installedAndUsed(self):
        """
        pip installs the example next to proxyws; a config names its plugin;
        requests through the proxy show its work (its header on the request
        and the response, its own answer at C{/hello}); an unknown name
        stops start-up listing the installed plugins, the example's among
        them.
        """
        bin = yield deferToThread(install, self.directory)
        _, backend = startBackend(self, Greeted())
        port = freePort()
        process = self.twistd(bin, CONFIG.format(port=port, backend=backend, name="hello"))

        def listening():
            if process.poll() is not None:
                raise AssertionError(process.stderr.read().decode())
            try:
                import socket

                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return True
            except OSError:
                return False

        yield waitUntil(listening, timeout=60, step=0.1)
        answer = yield rawRequest(
            port, b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        self.assertIn(b"\r\nX-Hello: bonjour\r\n", answer)
        self.assertTrue(answer.endswith(b"backend got bonjour"), answer)
        answer = yield rawRequest(
            port, b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        self.assertTrue(answer.endswith(b"\r\n\r\nbonjour\n"), answer)

        refused = self.twistd(bin, CONFIG.format(port=freePort(), backend=backend, name="helo"))
        yield deferToThread(refused.wait, 60)
        self.assertEqual(refused.returncode, 1)
        error = refused.stderr.read().decode()
        self.assertIn(
            "route[0].plugins[0].name: 'helo' is not an installed plugin (did you mean "
            "'hello'?); installed plugins: cors, headers, hello, htpasswd, jwt, ws-audit, "
            "ws-limit",
            error,
        )
