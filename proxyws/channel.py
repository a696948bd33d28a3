"""
A client's connection: HTTP/1.1 requests read strictly, one at a time, and
answered in order; or, once upgraded, the client leg of a websocket.

Every request head goes through one parser, L{proxyws.framing} (a front
door must read a request exactly as the server behind it will, or refuse
it), and every body through one of the decoders of L{proxyws.bodies}.  A
refused head gets its status (400, 414, 431, 501, 505) and the connection
closes.  A request is handed to the site's resource as soon as its head is
in, and its body streams to the backend as it arrives.

The requests are twisted.web L{Request}s (L{proxyws.site.ProxyRequest});
this protocol gives them what they ask of their channel: C{requestDone},
C{registerProducer}, C{write}, the addresses.
"""

from twisted.internet.interfaces import IHandshakeListener, ISSLTransport
from twisted.internet.protocol import Protocol
from zope.interface import implementer

from .access import within
from .bodies import decoderFor
from .errors import BodyError, HeadError
from .framing import HeadReader, hasBody, parseRequestHead, refusal
from .headers import headerValue
from .internals import writeNow
from .timers import Deadline
from .tls import peerSubject

# What a connection is doing (ProxyChannel._state).
HEAD, BODY, WAITING, HOLDING, CLOSED = "head", "body", "waiting", "holding", "closed"

# Bytes kept from the client while a request is answered (the next
# requests, pipelined) or while a websocket upgrade is pending (its first
# frames), before the proxy stops reading: about one socket read.
KEPT_LIMIT = 65536

# Seconds a connection closed for a timeout has to take what was written to
# it, before it is cut (twisted.web's abortTimeout): a client that does not
# read must not keep it open.
ABORT_TIMEOUT = 15.0


@implementer(IHandshakeListener)
class ProxyChannel(Protocol):
    """
    One client connection.

    States (C{_state}), each entered by the method named:
      - head (L{connectionMade}, L{requestDone}): reading a request head:
        the head timeout runs, or between requests the idle (keep-alive)
        timeout until the first byte;
      - body (L{_dispatch}): the request is being answered while its body
        arrives through a decoder; the body timeout runs between reads;
      - waiting (L{_dispatch}, L{_bodyDone}): the request is complete and
        being answered; bytes that come are the next request's, kept;
      - holding (L{holdForUpgrade}): a websocket upgrade is being answered;
        bytes that come are the websocket's, kept;
      - closed (L{connectionLost}, or L{upgrade} to a websocket).

    @ivar scheme: C{b"https"} or C{b"http"}: how the client reached us.
    @ivar peerHost: the address of the connection's peer as text (from the
        PROXY protocol header when the listener takes one), once known.
    @ivar trusted: whether the peer is a trusted proxy.
    @ivar localPort: the port the client connected to, as bytes.
    @ivar persistent: whether the connection may carry another request.
    @ivar requests: the request being answered, if any, in a list (as
        twisted.web's channel keeps it).
    """

    site = None
    # The client address counted against its limit of connections, if any.
    counted = None
    requestFactory = None
    timeOut = None
    subjectHeader = None
    peerHost = None
    trusted = False
    generation = 0
    persistent = True
    _peer = None
    _host = None
    _state = HEAD
    _decoder = None
    _requestProducer = None
    _transportPaused = False
    _readingPaused = False
    _registered = False
    # Between two requests, before the next head's first byte: the idle
    # (keep-alive) timeout runs rather than the head timeout.
    _idle = False
    # Over TLS, until the handshake is done.
    _handshaking = False

    def __init__(self):
        self.requests = []
        self._kept = []

    def connectionMade(self):
        """
        Note once what every request on this connection asks about it, and
        give the first head the head timeout (it covers a TLS handshake).
        """
        transport = self.transport
        if hasattr(transport, "setTcpNoDelay"):
            transport.setTcpNoDelay(True)
        self.scheme = b"https" if ISSLTransport(transport, None) is not None else b"http"
        self._handshaking = self.scheme == b"https"
        self.localPort = b"%d" % transport.getHost().port
        site = self.site
        self._reader = HeadReader(site.headLimits)
        self._deadline = Deadline(site.reactor)
        self._deadline.start(site.headTimeout, self._timedOut, 408)
        # The connection is the producer of what the transport writes: a
        # client that does not read pauses the response's producer.
        transport.registerProducer(self, True)
        self._registered = True

    def handshakeCompleted(self):
        """
        The TLS handshake is done (L{IHandshakeListener}).
        """
        self._handshaking = False

    def notePeer(self):
        """
        Work out the peer's address, once the first request has come (with
        the PROXY protocol, the header that names it comes first).
        """
        self._peer = self.transport.getPeer()
        self._host = self.transport.getHost()
        self.peerHost = self._peer.host
        self.trusted = within(self.peerHost, self.site.trustedProxies)
        listener = self.site.listener
        name = listener and listener.tls and listener.tls.clientSubjectHeader
        if name:
            self.subjectHeader = (name.encode("ascii"), headerValue(peerSubject(self.transport)))

    # Reading.

    def dataReceived(self, data):
        """
        Bytes from the client.
        """
        state = self._state
        if state is HEAD:
            self._readHead(data)
        elif state is BODY:
            self._readBody(data)
        elif state is WAITING or state is HOLDING:
            self._keep(data)

    def _readHead(self, data):
        try:
            found = self._reader.feed(data)
            if found is None:
                if self._idle:
                    # The first bytes of a head: from now on it has the head
                    # timeout, not the idle one.
                    self._idle = False
                    self._deadline.start(self.site.headTimeout, self._timedOut, 408)
                return
            head, rest = found
            parsed = parseRequestHead(head, self.site.headLimits)
        except HeadError as e:
            self._refuse(e)
            return
        self._dispatch(parsed, rest)

    def _dispatch(self, head, rest):
        """
        A whole head: make its request and hand it to the site's resource.
        """
        self._idle = False
        self._deadline.stop()
        request = self.requestFactory(self)
        self.requests.append(request)
        if not (head.version == b"HTTP/1.1" and b"close" not in head.connection):
            self.persistent = False
        if rest:
            self._kept.append(rest)
        if not hasBody(head):
            self._state = WAITING
            request.headReceived(head)
            return
        self._state = BODY
        request.headReceived(head)
        if self._state is not BODY:
            return  # answered and closed, or upgraded
        self._decoder = decoderFor(
            head, request.handleContentChunk, self._bodyDone, request.bodyLimit
        )
        self._deadline.start(self.site.bodyTimeout, self._timedOut, 408)
        kept, self._kept = b"".join(self._kept), []
        if kept:
            self._readBody(kept)

    def _readBody(self, data):
        try:
            self._decoder.dataReceived(data)
        except BodyError as e:
            self._bodyFailed(e)
            return
        if self._state is BODY:
            self._deadline.restart(self.site.bodyTimeout)

    def _bodyDone(self, rest):
        """
        The request's body is whole.
        """
        self._decoder = None
        self._deadline.stop()
        self._state = WAITING
        if rest:
            self._kept.append(rest)
        self.requests[-1].bodyComplete()

    def _bodyFailed(self, error):
        """
        The body is not framed as it must be, or is over its limit: answer
        that if the response has not started, and close.
        """
        self._decoder = None
        self._deadline.stop()
        request = self.requests[-1]
        self.persistent = False
        if request.startedWriting:
            self.transport.abortConnection()
        else:
            request.refuse(error)
            self.loseConnection()

    def pauseReading(self, backendStalled):
        """
        The request body has nowhere to go now: stop reading the client.

        @param backendStalled: whether the backend stopped reading it.  The
            body timeout then stops too, as the client is not the one late
            (the response timeout runs instead).  While the backend
            connection is being made it runs on: it also bounds the wait of
            a client gone meanwhile, whose close is not read while reading
            is paused.
        """
        self.transport.pauseProducing()
        if backendStalled and self._state is BODY:
            self._deadline.stop()

    def resumeReading(self):
        """
        The request body can go on, or is whole: read the client again
        (unless the connection holds enough of its next requests already),
        and time it again while its body comes.
        """
        if not self._readingPaused:
            self.transport.resumeProducing()
        if self._state is BODY:
            self._deadline.start(self.site.bodyTimeout, self._timedOut, 408)

    def _keep(self, data):
        self._kept.append(data)
        if not self._readingPaused and sum(map(len, self._kept)) > KEPT_LIMIT:
            self._readingPaused = True
            self.transport.pauseProducing()

    def _refuse(self, error):
        """
        Answer a head the parser refused, and close.
        """
        self._state = CLOSED
        self._deadline.stop()
        answer = refusal(error)
        writeNow(self.transport, answer)
        self.site.refused(self, error.status, len(answer) - answer.index(b"\r\n\r\n") - 4)
        self._close()

    def _close(self):
        """
        Close the connection, cutting it if the client does not take what
        was written to it in time.
        """
        self.loseConnection()
        self._deadline.start(ABORT_TIMEOUT, self.transport.abortConnection)

    def _timedOut(self, status):
        """
        A head (or body) did not come in time: 408 when nothing was
        answered yet, and close; an idle keep-alive connection just closes.
        """
        if status is None:
            self._close()
        elif self._handshaking:
            # Nothing can reach a client whose TLS handshake is not done
            # (a 408 would wait for it): cut the connection now.
            self._state = CLOSED
            self.transport.abortConnection()
        elif self._state is HEAD:
            self._refuse(HeadError(408, "the request head did not come in time"))
        elif self._state is BODY:
            self._bodyFailed(BodyError(408, "the request body stopped coming"))

    # Answering.

    def requestDone(self, request):
        """
        C{request}'s response is complete: read the next request, or close.
        """
        self.requests.remove(request)
        if not self.persistent or self._state is CLOSED:
            self.loseConnection()
            return
        self._state = HEAD
        self._idle = True
        self._deadline.start(self.timeOut, self._timedOut, None)
        if self._readingPaused:
            self._readingPaused = False
            self.transport.resumeProducing()
        kept, self._kept = b"".join(self._kept), []
        if kept:
            self._readHead(kept)

    def registerProducer(self, producer, streaming):
        """
        The response's producer (the backend connection): paused while the
        client's socket is full.
        """
        self._requestProducer = producer
        if self._transportPaused:
            producer.pauseProducing()

    def unregisterProducer(self):
        """
        The response's producer is done.
        """
        self._requestProducer = None

    def pauseProducing(self):
        """
        The client's socket is full: pause the response's producer.
        """
        self._transportPaused = True
        if self._requestProducer is not None:
            self._requestProducer.pauseProducing()

    def resumeProducing(self):
        """
        The client reads again.
        """
        self._transportPaused = False
        if self._requestProducer is not None:
            self._requestProducer.resumeProducing()

    def stopProducing(self):
        """
        The client's connection is gone (its end comes as connectionLost).
        """

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

    def loseConnection(self):
        """
        Close the connection once what is written has gone.
        """
        self._state = CLOSED
        if self._registered:
            # A TLS transport shuts down only once its producer is gone.
            self._registered = False
            self.transport.unregisterProducer()
        self.transport.loseConnection()

    # Websockets.

    def holdForUpgrade(self):
        """
        The request being answered asks for a websocket: keep what the
        client sends from now on (its first frames) for the websocket, and
        stop reading once that is more than a socket read.
        """
        self._state = HOLDING

    def releaseHeld(self):
        """
        The upgrade did not happen (the client gets an HTTP answer): what
        the client sent meanwhile cannot be read as HTTP, so the connection
        closes after the answer if anything came.
        """
        if self._state is HOLDING:
            self._state = WAITING
            if self._kept:
                self._kept = []
                self.persistent = False

    def upgrade(self, receiver):
        """
        The connection becomes a websocket: from now on its bytes and its
        end go to C{receiver}, and it has no timeout.

        @param receiver: has C{dataReceived(data)} and
            C{connectionLost(reason)}.
        @return: the bytes the client sent after its upgrade request.
        """
        self._state = CLOSED
        self._deadline.cancel()
        held, self._kept = b"".join(self._kept), []
        self.dataReceived = receiver.dataReceived
        self.connectionLost = receiver.connectionLost
        # The connection was the transport's producer (as HTTP); the relay
        # registers its own, and reading goes on.
        self._registered = False
        self.transport.unregisterProducer()
        self.transport.resumeProducing()
        return held

    # The connection.

    def isSecure(self):
        """
        Whether the connection uses TLS.
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

    def connectionLost(self, reason):
        """
        The connection is gone: tell the site and the request in progress.
        """
        self._state = CLOSED
        self.site.channelClosed(self)
        self._deadline.cancel()
        for request in list(self.requests):
            request.connectionLost(reason)
