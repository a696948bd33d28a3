"""
Helpers for the tests of the admin listener, the configurable-http-proxy
API and the route stores: requests rendered without sockets, a stand-in
server, and a real C{redis-server} on a free port.
"""

import io
import os
import shutil
import signal
import socket
import subprocess
import time
from urllib.parse import parse_qs

from twisted.internet.defer import Deferred, succeed
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from proxyws.interfaces import IServerStatus

from .helpers import freePort


def makeRequest(method, target, body=b"", headers=()):
    """
    A L{DummyRequest} for C{method} and C{target} (path and query), with a
    body and headers.
    """
    path, _, query = target.partition(b"?")
    request = DummyRequest(path.split(b"/")[1:])
    request.method = method
    request.uri = target
    request.path = path
    request.args = parse_qs(query.decode("latin-1"), keep_blank_values=True)
    request.args = {k.encode(): [v.encode() for v in vs] for k, vs in request.args.items()}
    request.content = io.BytesIO(body)
    for name, value in headers:
        request.requestHeaders.addRawHeader(name, value)
    return request


class Answer:
    """
    What a resource answered.

    @ivar code: the status.
    @ivar body: the body (bytes).
    @ivar headers: the response headers (a Twisted C{Headers}).
    """

    def __init__(self, request):
        self.code = request.responseCode or 200
        self.body = b"".join(request.written)
        self.headers = request.responseHeaders

    def header(self, name):
        """
        @return: the first value of a response header, or L{None}.
        """
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None


def render(resource, request):
    """
    Render C{request} on C{resource}.

    @return: a L{Deferred} firing with an L{Answer} once it is finished.
    """
    result = resource.render(request)
    if result is not NOT_DONE_YET:
        request.write(result)
        request.finish()
        return succeed(Answer(request))
    if request.finished:
        return succeed(Answer(request))
    done = Deferred()
    request.notifyFinish().addCallback(lambda _: done.callback(Answer(request)))
    return done


@implementer(IServerStatus)
class FakeServer:
    """
    A stand-in for the running server.

    @ivar reloads: the L{Deferred}s of the reloads asked for, to fire by
        the test.
    """

    state = "serving"

    def __init__(self, status=None):
        self._status = status or {"uptime_seconds": 12.5, "listeners": []}
        self.reloads = []

    def status(self):
        """
        The status given at construction.
        """
        return self._status

    def reload(self):
        """
        A reload whose outcome the test decides.
        """
        self.reloads.append(Deferred())
        return self.reloads[-1]


class RedisServer:
    """
    A C{redis-server} on 127.0.0.1 and a free port, without persistence.

    @ivar port: its port.
    """

    def __init__(self, port=None):
        self.port = port or freePort()
        self.process = None

    def start(self):
        """
        Start it and wait until it accepts connections.
        """
        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start on port {}".format(self.port))

    def kill(self):
        """
        Kill it outright (SIGKILL) and wait for it.
        """
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    @property
    def url(self):
        """
        Its C{redis://} URL.
        """
        return "redis://127.0.0.1:{}/0".format(self.port)
