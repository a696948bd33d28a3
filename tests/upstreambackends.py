"""
Members and clients for the loopback tests of upstreams
(L{tests.test_loopback_upstream}): twisted.web backends on 127.0.0.1 that
answer with their own name, count the requests they get and relay
websocket upgrades to the Autobahn echo server of L{tests.wsbackends}; that
can be killed (listener closed, every connection aborted) and started
again on the same port; a keep-alive HTTP client; and the config of an
upstream over them.

Everything started is stopped in the test's cleanups.
"""

import collections

from autobahn.twisted.resource import WebSocketResource
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from .test_loopback_security import parseResponse
from .wsbackends import EchoFactory, _closeAll, reactor


class Member(Resource):
    """
    A member's site: websocket upgrades go to its echo server; every other
    request is counted and answered with the member's name.

    @ivar name: its name (L{bytes}), the body of its answers.
    @ivar requests: a L{collections.Counter} of the requests by method.
    @ivar cookies: the C{Cookie} header of each request (or L{None}).
    @ivar status: the status it answers with.
    @ivar ownCookie: a C{Set-Cookie} value of its own to send, or L{None}.
    @ivar hold: when true, requests get no answer (they are kept in
        C{held}).
    @ivar factory: its L{EchoFactory}.
    """

    isLeaf = True

    def __init__(self, name):
        Resource.__init__(self)
        self.name = name
        self.requests = collections.Counter()
        self.cookies = []
        self.status = 200
        self.ownCookie = None
        self.hold = False
        self.held = []
        self.factory = EchoFactory()
        self._webSocket = WebSocketResource(self.factory)

    def render(self, request):
        """
        Relay an upgrade to the echo server; count and answer the rest.
        """
        if request.requestHeaders.getRawHeaders(b"Upgrade"):
            return self._webSocket.render(request)
        self.requests[request.method] += 1
        self.cookies.append(request.getHeader(b"cookie"))
        if self.hold:
            self.held.append(request)
            return NOT_DONE_YET
        request.setResponseCode(self.status)
        if self.ownCookie is not None:
            request.responseHeaders.addRawHeader(b"Set-Cookie", self.ownCookie)
        request.setHeader(b"Content-Type", b"text/plain")
        return self.name

    @property
    def total(self):
        """
        How many plain requests it got.
        """
        return sum(self.requests.values())


class _TrackingSite(Site):
    """
    A site that keeps its connections, to abort them all.
    """

    noisy = False

    def __init__(self, resource):
        Site.__init__(self, resource)
        self.channels = []
        # A channel taken over by a websocket would keep its timer.
        self.timeOut = None

    def buildProtocol(self, addr):
        """
        Build and keep the channel.
        """
        channel = Site.buildProtocol(self, addr)
        self.channels.append(channel)
        return channel

    def log(self, request):
        """
        No access log.
        """


class MemberServer:
    """
    A L{Member} listening on 127.0.0.1.

    @ivar resource: the L{Member}.
    @ivar port: its port number (the same after a restart).
    @ivar running: whether it listens.
    """

    def __init__(self, testCase, name, port=0, tls=None):
        """
        Start listening (on C{port}, or a free one).

        @param tls: Twisted TLS server options to serve HTTPS with, or
            L{None}.
        """
        self.resource = Member(name)
        self.site = _TrackingSite(self.resource)
        self._factory = self.site
        if tls is not None:
            self._factory = TLSMemoryBIOFactory(tls, False, self.site)
            self._factory.noisy = False
        self.running = False
        self._listening = None
        self.port = port
        self.start()
        testCase.addCleanup(self.stop)
        testCase.addCleanup(lambda: _closeAll(self.resource.factory.protocols))

    @property
    def name(self):
        """
        The member's name (L{bytes}).
        """
        return self.resource.name

    def start(self):
        """
        Listen (again) on its port.
        """
        self._listening = reactor().listenTCP(self.port, self._factory, interface="127.0.0.1")
        self.port = self._listening.getHost().port
        self.running = True

    def kill(self):
        """
        Die as a crashed process does: stop listening and abort every
        connection (keep-alive ones and websockets included).

        @return: a L{Deferred} that fires once the port is closed.
        """
        self.running = False
        stopped = self._listening.stopListening()
        for channel in self.site.channels:
            # Twisted's site builds a wrapper around the HTTPChannel.
            transport = channel._channel.transport
            if transport is not None and transport.connected:
                transport.abortConnection()
        self.site.channels = []
        return stopped

    def stop(self):
        """
        Stop listening, if it does (cleanup).
        """
        if self.running:
            self.running = False
            return self._listening.stopListening()
        return None


def startMembers(testCase, *names):
    """
    Start one L{MemberServer} per name.

    @return: a L{list} of them.
    """
    return [MemberServer(testCase, name) for name in names]


def upstreamConfig(
    members, *lines, route='path = "/"', weights=None, extra="", scheme="http"
):
    """
    A config with a listener on port 0, an upstream C{app} over
    C{members} (each named as its L{Member}) and one route to it.

    @param members: L{MemberServer}s, or C{(name, port)} pairs.
    @param lines: more lines of the C{[[upstream]]} table.
    @param route: the route's lines besides C{upstream}.
    @param weights: the members' weights, or L{None}.
    @param extra: more tables.
    @param scheme: the members' scheme.
    """
    tables = []
    for index, member in enumerate(members):
        name, port = (member.name, member.port) if isinstance(member, MemberServer) else member
        weight = ", weight = {}".format(weights[index]) if weights else ""
        tables.append(
            '{{ url = "{}://127.0.0.1:{}/", name = "{}"{} }}'.format(
                scheme, port, name.decode("ascii"), weight
            )
        )
    return (
        '[[listen]]\naddress = "127.0.0.1"\nport = 0\n\n'
        '[[upstream]]\nname = "app"\nmembers = [{}]\n{}\n\n'
        "[[route]]\n{}\nupstream = \"app\"\n{}"
    ).format(", ".join(tables), "\n".join(lines), route, extra)


def request(path=b"/", method=b"GET", headers=(), body=None, close=False):
    """
    The bytes of one HTTP/1.1 request.

    @param headers: more C{(name, value)} pairs.
    @param body: a body, sent with its C{Content-Length}.
    @param close: ask for the connection to close after the answer.
    """
    lines = [method + b" " + path + b" HTTP/1.1", b"Host: proxy.test"]
    lines.extend(name + b": " + value for name, value in headers)
    if body is not None:
        lines.append(b"Content-Length: %d" % len(body))
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def takeResponse(buffer):
    """
    The first whole response in C{buffer} (framed by C{Content-Length}).

    @return: C{(response, rest)}, or C{(None, buffer)} while incomplete.
    """
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None, buffer
    response = parseResponse(buffer[: end + 4])
    length = int(response.headers.get(b"content-length", [b"0"])[0])
    if len(buffer) < end + 4 + length:
        return None, buffer
    whole = end + 4 + length
    return parseResponse(buffer[:whole]), buffer[whole:]


class KeepAliveClient(Protocol):
    """
    One keep-alive connection to the proxy: each L{request} fires with its
    answer (a L{tests.test_loopback_security.Response}) once it is whole.
    """

    def __init__(self):
        self._buffer = b""
        self._waiting = collections.deque()

    def request(self, data):
        """
        Send C{data} (one request).

        @return: a L{Deferred} of the answer; it fails with
            L{ConnectionLost} when the connection closes first.
        """
        answer = Deferred()
        self._waiting.append(answer)
        self.transport.write(data)
        return answer

    def dataReceived(self, data):
        """
        Answer the waiting requests whose responses are whole.
        """
        self._buffer += data
        while self._waiting:
            response, self._buffer = takeResponse(self._buffer)
            if response is None:
                return
            self._waiting.popleft().callback(response)

    def connectionLost(self, reason):
        """
        Fail the requests still waiting.
        """
        waiting, self._waiting = self._waiting, collections.deque()
        for answer in waiting:
            answer.errback(ConnectionLost("the proxy closed the connection"))


@inlineCallbacks
def keepAliveClient(testCase, port):
    """
    Connect a L{KeepAliveClient} to C{port}, closed in cleanup.
    """
    client = yield connectProtocol(
        TCP4ClientEndpoint(reactor(), "127.0.0.1", port), KeepAliveClient()
    )
    testCase.addCleanup(lambda: client.transport.loseConnection())
    return client


@inlineCallbacks
def pipelined(port, count, path=b"/", connections=10):
    """
    Send C{count} GETs of C{path}, spread over C{connections} connections,
    each connection's requests written at once (pipelined).

    @return: the bodies of the answers, in no particular order (a
        L{list}); an answer other than 200 fails.
    """
    from .helpers import rawRequest
    from .test_httpproxy import parseResponses

    share = [count // connections + (n < count % connections) for n in range(connections)]
    sent = [
        rawRequest(port, request(path) * (n - 1) + request(path, close=True))
        for n in share
        if n
    ]
    results = yield DeferredList(sent, fireOnOneErrback=True, consumeErrors=True)
    bodies = []
    for (_, raw), n in zip(results, [n for n in share if n]):
        responses = parseResponses(raw)
        if len(responses) != n:
            raise AssertionError("{} answers of {}: {!r}".format(len(responses), n, raw[-300:]))
        for status, _, body in responses:
            if not status.startswith(b"HTTP/1.1 200 "):
                raise AssertionError("answered {!r}: {!r}".format(status, body))
            bodies.append(body)
    return bodies
