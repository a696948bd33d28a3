"""
The Autobahn protocols of a websocket's two opening handshakes, and the
backend connection they run on.

L{BackendHandshake} (Autobahn's client protocol) sends the backend the
client's request and reads its answer: the head codec (L{proxyws.heads})
reads every answer first, so that an interim answer is skipped, a refusal is
relayed and garbage is refused exactly as on the HTTP path, and only a 101
goes on to Autobahn's checks.  L{ClientHandshake} (Autobahn's server
protocol) answers the client's handshake as the backend answered.  Both
report to their L{proxyws.wsproxy.Upgrade}; neither sees a frame.
"""

from autobahn.twisted.websocket import WebSocketClientProtocol, WebSocketServerProtocol
from twisted.internet.protocol import Factory, Protocol

from .backend import _lost
from .errors import BadResponse
from .heads import (
    CHUNKED,
    LENGTH,
    UNTIL_CLOSE,
    encodeResponseHead,
    findHeadEnd,
    parseResponseHead,
    responseFraming,
)
from .bodies import ChunkedDecoder
from .errors import BodyError

# The most of a refusal's body the proxy waits for and relays.
REFUSAL_BODY_LIMIT = 65536

# Interim (1xx) answers taken before the backend's real one.
MAX_INTERIM = 16


class ClientHandshake(WebSocketServerProtocol):
    """
    Autobahn's server side of the client's opening handshake; it sees no
    frame.
    """

    upgrade = None

    def onConnect(self, request):
        """
        Answer the client's handshake as the backend answered the proxy's.
        """
        return self.upgrade.clientAnswer()

    def failHandshake(self, reason, code=400, responseHeaders=None):
        """
        Report a refused handshake; the proxy answers the client itself.
        """
        self.upgrade.clientFailed(reason)

    def onOpen(self):
        """
        The client's handshake is answered.
        """
        self.upgrade.clientOpen()


class BackendHandshake(WebSocketClientProtocol):
    """
    Autobahn's client side of the backend's opening handshake, with the
    backend's answer read by the proxy's head codec first; it sees no frame.
    """

    upgrade = None
    _interim = 0
    _early = b""
    _failed = False

    def onConnecting(self, transportDetails):
        """
        Send the backend the client's path, headers, subprotocols and
        compression offers.
        """
        return self.upgrade.backendRequest()

    def processHandshake(self):
        """
        Read the backend's answer: skip interim answers, relay a refusal,
        or let Autobahn check a 101.
        """
        if self._failed:
            return
        try:
            end = findHeadEnd(self.data)
            if end < 0:
                return
            head = parseResponseHead(self.data[:end])
            rest = self.data[end + 4 :]
            if 100 <= head.code < 200 and head.code != 101:
                self._interim += 1
                if self._interim > MAX_INTERIM:
                    raise BadResponse("more than {} interim answers".format(MAX_INTERIM))
                self.data = rest
                return self.processHandshake()
            if head.code != 101:
                return self._refused(head, rest)
            responseFraming(head, b"GET", upgrading=True)
            fields = self.upgrade.backendAnswered(head)
        except BadResponse as e:
            return self._fail(e)
        self.data = encodeResponseHead(head.version, 101, head.phrase, fields) + rest
        return WebSocketClientProtocol.processHandshake(self)

    def _refused(self, head, rest):
        body = refusalBody(head, rest, closed=False)
        if body is not None:
            self.upgrade.backendRefused(head, body)
            self._failed = True

    def _fail(self, error):
        self._failed = True
        self.upgrade.backendFailed(error)

    def failHandshake(self, reason):
        """
        Autobahn refused the backend's 101 (its key or headers).
        """
        if not self._failed:
            self._fail(BadResponse(reason))

    def onConnect(self, response):
        """
        The backend's 101 passed Autobahn's checks.
        """

    def onOpen(self):
        """
        The backend's handshake is done: answer the client's.
        """
        self.upgrade.backendOpen()

    def consumeData(self):
        """
        Read the handshake; once it is open, bytes after the 101 are the
        backend's first frames: keep them for the relay.
        """
        if self.state == self.STATE_OPEN:
            self._early, self.data = self._early + self.data, b""
        else:
            WebSocketClientProtocol.consumeData(self)

    def takeEarlyBytes(self):
        """
        @return: the backend's first frames, received with its 101.
        """
        early, self._early = self._early + self.data, b""
        self.data = b""
        return early

    def connectionLost(self, reason):
        """
        The connection closed during the handshake.
        """
        if self._failed or self.upgrade is None:
            return
        if self.state == self.STATE_CONNECTING and self.data:
            # A refusal whose body runs until the connection closes.
            try:
                end = findHeadEnd(self.data)
                if end >= 0:
                    head = parseResponseHead(self.data[:end])
                    if head.code >= 200:
                        body = refusalBody(head, self.data[end + 4 :], closed=True)
                        if body is not None:
                            self._failed = True
                            self.upgrade.backendRefused(head, body)
                            return
            except BadResponse as e:
                return self._fail(e)
        lost = _lost(False, reason)
        if lost.tlsFailed:
            # The TLS handshake or the certificate check failed: a TLS
            # error, as on the HTTP path.
            return self._fail(lost)
        self._fail(reason.getErrorMessage() if reason is not None else None)


def refusalBody(head, data, closed):
    """
    The body of a backend's answer other than 101, once enough has come.

    @param head: the answer's L{proxyws.heads.ResponseHead}.
    @param data: the bytes after its head so far.
    @param closed: whether the connection has closed (nothing more comes).
    @return: the body (decoded when chunked, at most L{REFUSAL_BODY_LIMIT}
        bytes), or L{None} to wait for more.
    @raise BadResponse: for a head whose framing is ambiguous, or a broken
        chunked body.
    """
    framing = responseFraming(head, b"GET", upgrading=True)
    if framing.kind is CHUNKED:
        chunks, done = [], []
        decoder = ChunkedDecoder(chunks.append, done.append)
        try:
            decoder.dataReceived(data)
        except BodyError:
            raise BadResponse("invalid chunked body") from None
        body = b"".join(chunks)
        if done or len(body) >= REFUSAL_BODY_LIMIT or closed:
            return body[:REFUSAL_BODY_LIMIT]
        return None
    if framing.kind is LENGTH:
        wanted = min(framing.length, REFUSAL_BODY_LIMIT)
        if len(data) < wanted and not closed:
            return None
        return data[:wanted]
    if framing.kind is UNTIL_CLOSE:
        if len(data) < REFUSAL_BODY_LIMIT and not closed:
            return None
        return data[:REFUSAL_BODY_LIMIT]
    return b""


class BackendSocket(Protocol):
    """
    The backend connection of one websocket: its bytes and its end go to
    the Autobahn handshake first, then to the relay (C{receiver}).

    @ivar handshake: the L{BackendHandshake} while it runs.
    @ivar receiver: where bytes and the end go.
    """

    handshake = None
    receiver = None

    def __init__(self, upgrade, factory):
        self._upgrade = upgrade
        self._factory = factory

    def connectionMade(self):
        """
        Start the handshake.
        """
        handshake = self._factory.buildProtocol(self.transport.getPeer())
        handshake.upgrade = self._upgrade
        self.handshake = self.receiver = handshake
        self._upgrade.backendConnected(self)
        handshake.makeConnection(self.transport)
        self._upgrade = self._factory = None

    def dataReceived(self, data):
        """
        Bytes from the backend, during the handshake.
        """
        self.receiver.dataReceived(data)

    def relayTo(self, receiver):
        """
        From now on, bytes and the end go to C{receiver}: its
        C{dataReceived} is called straight from the transport.
        """
        self.receiver = receiver
        self.dataReceived = receiver.dataReceived

    def connectionLost(self, reason):
        """
        The backend connection is gone.
        """
        receiver, self.receiver = self.receiver, None
        if receiver is not None:
            receiver.connectionLost(reason)


class BackendConnector(Factory):
    """
    Builds the backend connection of one upgrade.
    """

    noisy = False

    def __init__(self, upgrade, factory):
        """
        @param upgrade: the L{proxyws.wsproxy.Upgrade}.
        @param factory: the route's Autobahn client factory.
        """
        self._upgrade = upgrade
        self._factory = factory

    def buildProtocol(self, addr):
        """
        @return: a L{BackendSocket} tied to the upgrade.
        """
        return BackendSocket(self._upgrade, self._factory)
