"""
The front end: a twisted.web L{Site} whose requests stream their bodies.

Twisted's own L{Request} reads a whole request body into a file before it is
rendered.  L{ProxyRequest} instead starts processing as soon as the headers
of a request with a body are in, and hands the body on piece by piece (see
L{proxyws.httpproxy.RequestBody}).  Requests without a body are processed as
usual, when they are complete.

L{ProxySite} writes the access log with proxyws's own combined-format
formatter and knows its open connections and websockets, so that a graceful
stop can let requests in flight finish, close idle keep-alive connections
and close websockets with 1001.
"""

import ipaddress
import re

from twisted.internet.defer import Deferred
from twisted.web.http import NO_BODY_CODES, HTTPChannel
from twisted.web.iweb import INonQueuedRequestFactory
from twisted.web.server import Request, Site

from . import internals
from .accesslog import formatCombined, requestLine
from .headers import TOKEN
from .heads import encodeResponseHead, mergeFields
from .httpproxy import RequestBody
from .internals import writeNow
from .timers import Deadline
from .tls import peerSubject

# A request head without a body that Twisted's parser would take as it is:
# a token method, a target of printable ASCII, HTTP/1.0 or 1.1, and header
# lines of a token name and a value with no NUL (no continuation lines).
_PLAIN_HEAD = re.compile(
    rb"(" + TOKEN + rb") ([\x21-\x7e]+) (HTTP/1\.[01])"
    rb"((?:\r\n" + TOKEN + rb":[^\x00\r\n]*)*)"
)

# Bytes of a client's first frames held while its websocket upgrade is
# pending, before the proxy stops reading (one socket read).
HELD_LIMIT = 65536

# Header names that announce a request body.
_BODY_HEADERS = (b"\r\ncontent-length:", b"\r\ntransfer-encoding:")


def _within(address, networks):
    """
    Whether C{address} (text) is in one of C{networks}.
    """
    if not networks:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def headerValue(text):
    """
    Text (such as a certificate subject) as a header value, or L{None} when
    it has none or holds control characters that would break the header.
    """
    if text is None:
        return None
    value = text.encode("utf-8")
    if any(byte < 0x20 or byte == 0x7F for byte in value):
        return None
    return value


def realClient(forwardedFor, peer, trusted):
    """
    The client's address behind trusted proxies: the last address of
    C{X-Forwarded-For} that is not a trusted proxy (nginx's
    C{real_ip_recursive on}).

    @param forwardedFor: the header's values, or L{None}.
    @param peer: the address of the connection's peer, a trusted proxy.
    @param trusted: the trusted networks.
    @return: the address as text.
    """
    addresses = [
        a.strip().decode("ascii", "replace")
        for value in forwardedFor or ()
        for a in value.split(b",")
        if a.strip()
    ]
    client = peer
    for address in reversed(addresses):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            break
        client = address
        if not _within(address, trusted):
            break
    return client


class ProxyRequest(Request):
    """
    A request that is processed when its headers are in, with a body that
    streams (when it has one).

    @ivar _body: the L{RequestBody} handed to the backend, if any.
    @ivar _bodyPending: the request has a body that is still arriving.
    @ivar _finishPending: the response is complete but the request body is
        not; the request finishes when the body is in.
    """

    content = None
    channel = None
    received = None
    remoteUser = None
    # The first value of the Host header, or None.
    hostHeader = None
    # Called with the reason when the client leaves before the response is
    # complete (notifyFinish without a Deferred, for the proxy's hot path).
    whenGone = None
    _body = None
    _bodyPending = False
    _finishPending = False
    # The backend's fields as the client gets them, and the body length,
    # handed over once by respond().
    _relayed = ()
    _responseLength = None

    def gotLength(self, length):
        """
        The headers are in: a request with a body is processed now.

        @param length: the body length, L{None} for chunked, 0 for none.
        """
        if length == 0:
            return
        channel = self.channel
        expect = self.requestHeaders.getRawHeaders(b"Expect")
        method, target, version = internals.requestLine(channel)
        if expect and expect[0].lower() == b"100-continue":
            # Twisted would send "100 Continue" after this returns, after a
            # final answer given now (404, 403...): send it first.
            self.requestHeaders.removeHeader(b"Expect")
            if version == b"HTTP/1.1":
                writeNow(channel.transport, encodeResponseHead(version, 100, b"Continue", ()))
        self._bodyPending = True
        self._length = length
        self._setRequestLine(method, target, version)
        self.process()

    def parseCookies(self):
        """
        Do not parse the client's cookies: the proxy passes them on as they
        are (C{received_cookies} stays empty).
        """

    def takeBody(self):
        """
        Take the request body to stream it somewhere.

        @return: a L{RequestBody}, or L{None} when the request has no body.
        """
        if not self._bodyPending:
            return None
        self._body = RequestBody(self.channel.transport, self._length)
        return self._body

    def handleContentChunk(self, data):
        """
        A piece of the body; dropped if nobody took the body.
        """
        if self._body is not None:
            self._body.dataReceived(data)

    def requestReceived(self, command, path, version):
        """
        The whole request is in: complete the body, or process the request.
        """
        if not self._bodyPending:
            self._setRequestLine(command, path, version)
            self.process()
            return
        self._bodyPending = False
        if self._body is not None:
            self._body.bodyComplete()
        if self._finishPending:
            Request.finish(self)

    def _setRequestLine(self, command, path, version):
        channel = self.channel
        # Apache's %t is when the request arrived, not when it was logged.
        self.received = channel.site.reactor.seconds()
        self.scheme = channel.scheme
        if channel.peerHost is None:
            channel.notePeer()
        self.peerHost = channel.peerHost
        self.clientHost = channel.peerHost
        if channel.trusted:
            self.clientHost = realClient(
                self.requestHeaders.getRawHeaders(b"X-Forwarded-For"),
                channel.peerHost,
                channel.site.trustedProxies,
            )
        self.localPort = channel.localPort
        host = self.requestHeaders.getRawHeaders(b"Host")
        if host:
            self.hostHeader = host[0]
        self.method = command
        self.uri = path
        self.clientproto = version
        self.path = path.partition(b"?")[0]
        self.args = {}

    def respond(self, code, phrase, fields, length, now=True):
        """
        Start the response with a backend's status and fields.

        The head is built once, by L{write}: these fields in their order,
        less any the proxy sets itself in C{responseHeaders} (such as HSTS),
        then the proxy's own, then the framing.

        @param fields: the backend's C{(name, value)} fields as the client
            gets them (see L{proxyws.headers.responseFields}).
        @param length: the body length, or L{None} when not known.
        @param now: send the head now; else it goes with the first body
            bytes.
        """
        self.setResponseCode(code, phrase)
        self._relayed = fields
        self._responseLength = length
        if now:
            self.write(b"")

    def _head(self):
        """
        The response head: the relayed fields and the proxy's own, framed
        with the length when it is known, else chunked (HTTP/1.1) or by
        closing the connection (HTTP/1.0).
        """
        code = self.code
        fields = mergeFields(self._relayed, list(self.responseHeaders.getAllRawHeaders()))
        length = self._responseLength
        if length is not None and code not in NO_BODY_CODES:
            fields.append((b"Content-Length", b"%d" % length))
        elif (
            self.clientproto == b"HTTP/1.1"
            and length is None
            and self.method != b"HEAD"
            and code not in NO_BODY_CODES
            and not self.responseHeaders.hasHeader(b"Content-Length")
        ):
            fields.append((b"Transfer-Encoding", b"chunked"))
            self.chunked = 1
        return encodeResponseHead(self.clientproto, code, self.code_message, fields)

    def write(self, data):
        """
        Write response bytes; the first write sends the head with them, in
        one piece.
        """
        if self.finished:
            raise RuntimeError("Request.write called on a request after Request.finish was called.")
        channel = self.channel
        if channel is None:
            return  # the client left: nothing more to send
        head = b""
        if not self.startedWriting:
            self.startedWriting = 1
            head = self._head()
            if self.method == b"HEAD" or self.code in NO_BODY_CODES:
                self.write = _discard
                writeNow(channel.transport, head)
                return
        if data:
            self.sentLength += len(data)
            if self.chunked:
                data = b"%x\r\n%s\r\n" % (len(data), data)
        if head or data:
            writeNow(channel.transport, head + data)

    def connectionLost(self, reason):
        """
        The connection ended before the response did: tell L{whenGone},
        and write the request's access-log line, which C{finish} will not:
        499 when nothing was sent yet (the client left, as nginx logs it),
        else the status sent and the bytes that went out.
        """
        channel = self.channel
        Request.connectionLost(self, reason)
        whenGone, self.whenGone = self.whenGone, None
        if whenGone is not None:
            whenGone(reason)
        if not self.finished and self.received is not None and channel is not None:
            channel.site.log(self, status=self.code if self.startedWriting else 499)

    def finish(self):
        """
        Finish the response, once the request body is all in.
        """
        if self._bodyPending:
            self._finishPending = True
        else:
            Request.finish(self)

    def process(self):
        """
        Hand the request to the site's root resource, without Twisted's
        resource traversal or default headers.
        """
        self.site = self.channel.site
        self.site.resource.render(self)


def _discard(data):
    """
    The C{write} of a response that has no body (HEAD, 204, 304).
    """


class ProxyChannel(HTTPChannel):
    """
    An HTTP connection from a client, known to its site while it is open.

    @ivar scheme: C{b"https"} or C{b"http"}: how the client reached us.
    @ivar peerHost: the address of the connection's peer as text (from the
        PROXY protocol header when the listener takes one).
    @ivar trusted: whether the peer is a trusted proxy.
    @ivar localPort: the port the client connected to, as bytes.
    """

    subjectHeader = None
    _peer = None
    _host = None
    _idle = None
    # Bytes from the client held while its websocket upgrade is pending.
    _held = None

    def connectionMade(self):
        """
        Note once what every request on this connection asks about it.
        """
        HTTPChannel.connectionMade(self)
        self.scheme = b"https" if HTTPChannel.isSecure(self) else b"http"
        self.localPort = b"%d" % self.transport.getHost().port
        self.peerHost = None

    def notePeer(self):
        """
        Work out the peer's address, once the first request has come (with
        the PROXY protocol, the header that names it comes first).
        """
        self._peer = self.transport.getPeer()
        self._host = self.transport.getHost()
        self.peerHost = self._peer.host
        self.trusted = _within(self.peerHost, self.site.trustedProxies)
        listener = self.site.listener
        name = listener and listener.tls and listener.tls.clientSubjectHeader
        if name:
            self.subjectHeader = (name.encode("ascii"), headerValue(peerSubject(self.transport)))

    def dataReceived(self, data):
        """
        Bytes from the client.  A whole request head without a body, alone
        in C{data} and at the start of a request, is parsed in one pass;
        anything else goes through Twisted's line parser.
        """
        if self._held is not None:
            self._hold(data)
        elif (
            data[-4:] == b"\r\n\r\n"
            and internals.wholeHeadReady(self)
            and not self.paused
            and self.persistent
            and len(data) <= self.totalHeadersSize
            and self._plainRequest(data[:-4])
        ):
            return
        else:
            HTTPChannel.dataReceived(self, data)

    def rawDataReceived(self, data):
        """
        Bytes after a request head: its body, or (held while a websocket
        upgrade is pending) the client's first frames.
        """
        if self._held is not None:
            self._hold(data)
        else:
            HTTPChannel.rawDataReceived(self, data)

    def holdForUpgrade(self):
        """
        The request being handled asks for a websocket: keep what the
        client sends from now on (its first frames) for the websocket, and
        stop reading once that is more than a socket read.
        """
        self._held = []

    def releaseHeld(self):
        """
        The upgrade did not happen (the client gets an HTTP answer): what
        the client sent meanwhile cannot be read as HTTP, so the connection
        closes after the answer if anything came.
        """
        held, self._held = self._held, None
        if held:
            self.persistent = False
            self.transport.resumeProducing()

    def _hold(self, data):
        self._held.append(data)
        if sum(map(len, self._held)) > HELD_LIMIT:
            self.transport.pauseProducing()

    def upgrade(self, receiver):
        """
        The connection becomes a websocket: from now on its bytes and its
        end go to C{receiver}, and it has no idle timeout.

        @param receiver: has C{dataReceived(data)} and
            C{connectionLost(reason)}.
        @return: the bytes the client sent after its upgrade request.
        """
        if self._idle is not None:
            self._idle.cancel()
        held, self._held = b"".join(self._held or ()), None
        self.dataReceived = receiver.dataReceived
        self.connectionLost = receiver.connectionLost
        # The connection was the transport's producer (as HTTP); the relay
        # registers its own, and reading goes on.
        self.transport.unregisterProducer()
        self.transport.resumeProducing()
        return held

    def _plainRequest(self, head):
        """
        Take a request head that Twisted's parser would take line by line
        to the same end: the same request object, headers and calls.

        @return: whether it was taken; if not, nothing was done.
        """
        match = _PLAIN_HEAD.fullmatch(head)
        if match is None:
            return False
        method, target, version, fields = match.groups()
        lines = fields.split(b"\r\n")
        if len(lines) - 1 > self.maxHeaders:
            return False
        lowered = fields.lower()
        if _BODY_HEADERS[0] in lowered or _BODY_HEADERS[1] in lowered:
            return False
        self.resetTimeout()
        if INonQueuedRequestFactory.providedBy(self.requestFactory):
            request = self.requestFactory(self)
        else:
            request = self.requestFactory(self, len(self.requests))
        self.requests.append(request)
        add = request.requestHeaders.addRawHeader
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            add(name, value.strip(b" \t"))
        internals.dispatchWholeHead(self, method, target, version)
        return True

    def setTimeout(self, period):
        """
        Start (or with L{None} stop) the idle timeout, on a L{Deadline}: it
        stops and starts again with every request, so a request schedules
        no call of its own (Twisted's C{TimeoutMixin} would make one).

        @return: the previous period.
        """
        previous, self.timeOut = self.timeOut, period
        deadline = self._idle
        if deadline is None:
            deadline = self._idle = Deadline(self.site.reactor)
        if period is None:
            deadline.stop()
        else:
            deadline.start(period, self.timeoutConnection)
        return previous

    def resetTimeout(self):
        """
        Bytes came: the idle timeout, if running, starts over.
        """
        if self._idle is not None:
            self._idle.restart(self.timeOut)

    def isSecure(self):
        """
        Whether the connection uses TLS (worked out once per connection).
        """
        return self.scheme == b"https"

    def getPeer(self):
        """
        The peer's address, asked of the transport once per connection.
        """
        return self._peer or self.transport.getPeer()

    def getHost(self):
        """
        The local address, asked of the transport (a system call) once per
        connection.
        """
        return self._host or self.transport.getHost()

    def write(self, data):
        """
        Write response bytes, at once when the socket takes them.
        """
        writeNow(self.transport, data)

    def writeSequence(self, iovec):
        """
        Write pieces of a response, at once when the socket takes them.
        """
        writeNow(self.transport, b"".join(iovec))

    def connectionLost(self, reason):
        """
        Tell the site, then clean up as usual.
        """
        self.site.channelClosed(self)
        HTTPChannel.connectionLost(self, reason)
        if self._idle is not None:
            self._idle.cancel()


class ProxySite(Site):
    """
    The site every listener serves.

    @ivar accessLog: an C{IAccessLog} receiving one line per request.
    """

    requestFactory = ProxyRequest
    protocol = ProxyChannel
    noisy = False

    def __init__(
        self, resource, accessLog, reactor, timeout, listener=None, trustedProxies=()
    ):
        """
        @param resource: the root resource.
        @param accessLog: where access-log lines go.
        @param reactor: the reactor (clock).
        @param timeout: seconds an idle client connection is kept.
        @param listener: the L{proxyws.config.Listener} served, if any.
        @param trustedProxies: networks whose X-Forwarded-For is believed.
        """
        Site.__init__(self, resource, reactor=reactor, timeout=timeout)
        self.accessLog = accessLog
        self.listener = listener
        self.trustedProxies = trustedProxies
        # The number of the config in force (a reload adds one), noted on
        # each connection, so that the status can tell those held past a
        # reload.
        self.generation = 0
        self._channels = set()
        self._relays = set()
        self._drained = None

    def buildProtocol(self, addr):
        """
        Build a L{ProxyChannel} and remember it.
        """
        channel = Site.buildProtocol(self, addr)
        channel.generation = self.generation
        self._channels.add(channel)
        return channel

    def channelGenerations(self):
        """
        @return: C{(channel, generation)} of every open HTTP connection.
        """
        return [(channel, channel.generation) for channel in self._channels]

    def relays(self):
        """
        @return: the open websockets' L{proxyws.wsrelay.Relay}s.
        """
        return list(self._relays)

    def channelClosed(self, channel):
        """
        C{channel}'s connection is closed.
        """
        self._channels.discard(channel)
        self._checkDrained()

    def webSocketOpened(self, relay, channel):
        """
        C{channel} became the client leg of the websocket C{relay}.
        """
        self._channels.discard(channel)
        self._relays.add(relay)
        relay.generation = channel.generation
        if self._drained is not None:
            relay.goAway()

    def webSocketClosed(self, relay):
        """
        Both legs of C{relay} are closed.
        """
        self._relays.discard(relay)
        self._checkDrained()

    def _checkDrained(self):
        if self._drained is not None and not self._channels and not self._relays:
            drained, self._drained = self._drained, None
            drained.callback(None)

    def log(self, request, status=None, size=None):
        """
        Write the access-log line of a finished request.

        @param status: the status to log instead of the request's (a
            websocket logs 101 when it closes).
        @param size: the bytes sent to log instead of the body's length.
        """
        headers = request.requestHeaders
        referer = headers.getRawHeaders(b"Referer")
        agent = headers.getRawHeaders(b"User-Agent")
        self.accessLog.write(
            formatCombined(
                request.clientHost,
                None,
                request.remoteUser,
                request.received,
                requestLine(request.method, request.uri, request.clientproto),
                request.code if status is None else status,
                request.sentLength if size is None else size,
                referer[0] if referer else None,
                agent[0] if agent else None,
            )
        )

    def drain(self):
        """
        Stop keeping connections alive: close the idle ones now and each busy
        one when its response is complete.

        @return: a L{Deferred} that fires when every connection is closed.
        """
        drained = self._drained = Deferred()
        for channel in list(self._channels):
            channel.persistent = False
            if not channel.requests:
                channel.transport.loseConnection()
        for relay in list(self._relays):
            relay.goAway()
        self._checkDrained()
        return drained

    def abortAll(self):
        """
        Close every connection at once (the shutdown deadline has passed).
        """
        for channel in list(self._channels):
            channel.transport.abortConnection()
        for relay in list(self._relays):
            relay.abort()
