"""
The websocket relay: frames pass between two open connections as they are.

Once both opening handshakes are done (L{proxyws.wsproxy}), a L{Relay}
joins the client's connection and the backend's.  Each side's bytes are
written to the other unchanged, without unmasking, re-masking or
re-assembling: a client's masked frames are valid for the backend and the
backend's frames are valid for the client, compressed ones included (both
ends negotiated the same parameters).  A L{FrameScanner} per direction
reads only frame headers, so that the proxy can put its own frames (pings,
closes) between two frames, refuse frames no peer may send, enforce the
route's message size limit, and see closes and pongs go by.

Each connection's transport is the streaming producer of the other's
writes, so a slow reader on one side pauses reading on the other.

A connection is read more bytes at a time while a peer sends faster than
the proxy reads (L{proxyws.wsreads}).

Whole messages: a feature that must see message contents (a websocket
filter) gives a direction another passage (L{Relay.passage}), one that
assembles, inflates and re-frames messages; nothing else in the relay
changes.  A route's websocket filters do so (L{proxyws.wsmessages}): the
relay's C{messages} is then the websocket's message session.
"""

import os
from functools import partial

from twisted.internet.interfaces import ISSLTransport

from .logs import ProxyLogger
from .internals import writeNow
from .timers import Deadline
from .errors import BadFrame, MessageTooBig
from .wsframes import CLOSE, PING, PONG, FrameScanner, closePayload, controlFrame, parseClose
from .wsreads import UNSET, resize, startReading

# What the other side is told when one side goes away without a close frame
# (RFC 6455 7.4.1): the client vanished -> the backend is told the client
# is "going away"; the backend vanished -> the client gets "internal error".
LOST = {
    "client": (1001, "proxyws: client connection lost"),
    "backend": (1011, "proxyws: backend connection lost"),
}

# A graceful stop closes every websocket with this, on both legs.
SHUTDOWN = (1001, "proxyws: server shutting down")

# A websocket open longer than [server] max_websocket_lifetime is closed
# with this, on both legs.
LIFETIME = (1001, "proxyws: max_websocket_lifetime reached")

# Seconds a peer is given to answer a close frame (its own partner's, or
# the proxy's) before its connection is closed anyway.
CLOSE_TIMEOUT = 5.0

# The payload of the proxy's own pings.
PING_PAYLOAD = b"proxyws"

_log = ProxyLogger()


class Leg:
    """
    One side of a relay: a connection and what the relay knows of it.

    @ivar side: C{"client"} or C{"backend"}.
    @ivar transport: the connection's transport.
    @ivar peer: the other leg.
    @ivar scanner: the L{FrameScanner} of the bytes this leg's peer sends.
    @ivar pending: the proxy's own frames for this leg's peer, waiting for
        the end of a frame relayed to it.
    @ivar closeSent: a close frame went (or is pending) to this leg's peer.
    @ivar closeReceived: this leg's peer sent a close frame.
    @ivar gone: the connection is closed.
    @ivar waiting: what this leg's peer must answer in time: C{"pong"},
        C{"close"} or L{None}.
    @ivar sent: bytes written to this leg's peer.
    @ivar counting: the L{FrameScanner} whose counts of messages and bytes
        the metrics read: L{scanner}, or a message passage's own.
    @ivar reader: the TCP transport of the connection (whose C{bufferSize}
        is the read size), or L{None}.
    @ivar readSize: a read this long is full (more is waiting): the read
        size, or L{proxyws.wsreads.UNSET} when it cannot be changed.
    @ivar grown: the read size is above the route's C{ws_buffer_size}.
    """

    __slots__ = (
        "side",
        "transport",
        "peer",
        "scanner",
        "pending",
        "closeSent",
        "closeReceived",
        "gone",
        "waiting",
        "deadline",
        "sent",
        "counting",
        "reader",
        "readSize",
        "grown",
    )

    def __init__(self, side, transport, scanner):
        self.side = side
        self.transport = transport
        self.peer = None
        self.scanner = scanner
        self.pending = None
        self.closeSent = False
        self.closeReceived = False
        self.gone = False
        self.waiting = None
        self.deadline = None
        self.sent = 0
        self.counting = scanner
        self.reader = None
        self.readSize = UNSET
        self.grown = False

    def mask(self):
        """
        @return: a masking key for a frame of the proxy's own to this leg's
            peer (frames to a server are masked), or L{None}.
        """
        return os.urandom(4) if self.side == "backend" else None


class _Producer:
    """
    One leg's transport as the producer of the other leg's writes.  Pausing
    and resuming pass through; stopping does not, so that when one leg's
    connection ends the other can still finish its close handshake.
    """

    __slots__ = ("_transport",)

    def __init__(self, transport):
        self._transport = transport

    def pauseProducing(self):
        self._transport.pauseProducing()

    def resumeProducing(self):
        self._transport.resumeProducing()

    def stopProducing(self):
        pass


class Relay:
    """
    Relays frames between a client's and a backend's open websocket.

    States:
      - open (L{start}): frames flow both ways;
      - closing (L{_sendClose}, L{_closeReceived}): a close frame went to
        at least one peer; data frames no longer go to a peer that was sent
        one, and nothing a peer sends after its own close frame is read;
        each peer sent a close has L{CLOSE_TIMEOUT} to answer it;
      - closed (L{_finished}, when both connections are gone): every timer
        stopped, the site and C{whenFinished} told, the access-log line
        written.

    @ivar client: the client's L{Leg}.
    @ivar backend: the backend's L{Leg}.
    @ivar whenFinished: callables (without arguments) called once both
        connections are gone.
    @ivar messages: the websocket's L{proxyws.wsmessages.MessageSession}
        when its route has websocket filters, else L{None}: frames relay
        as they are.
    @ivar activity: a callable (without arguments) called when bytes
        arrive from either peer (a route added through the API records its
        last activity), or L{None}: the site's C{webSocketActivity} gives
        it when the relay starts.
    @ivar counter: the websocket's L{proxyws.metrics.WebSocketCounter} when
        there are metrics, else L{None}.
    """

    whenFinished = ()
    retiring = False
    generation = 0
    # The client address counted against its limit of connections, if any.
    counted = None
    messages = None
    activity = None
    counter = None

    def __init__(self, route, reactor, site, request, why=None):
        """
        @param route: the L{proxyws.values.Route}.
        @param reactor: the reactor (clock).
        @param site: the L{proxyws.site.ProxySite} the client came through:
            it is told when the relay opens and closes, and writes its log.
        @param request: the client's upgrade request (for the access log).
        """
        self.route = self._route = route
        self._reactor = reactor
        self._site = site
        self.request = request
        self._why = why
        self._ticker = None
        self._idle = None
        self.client = self.backend = None
        self.deflateParameters = None

    def start(self, channel, backendSocket, backendEarly, deflate):
        """
        Both handshakes are done: relay from now on.

        @param channel: the client's L{proxyws.site.ProxyChannel}; the bytes
            the client sent after its upgrade request are held there.
        @param backendSocket: the backend's connection protocol (a
            L{proxyws.wsproxy.BackendSocket}, with C{transport} and
            C{receiver}).
        @param backendEarly: bytes the backend sent after its 101.
        @param deflate: the agreed permessage-deflate parameters (a
            L{proxyws.wscompress.Offer}), or L{None} without compression.
        """
        route = self._route
        limit = route.maxMessageSize
        self.deflateParameters = deflate
        compressed = deflate is not None
        client = self.client = Leg(
            "client", channel.transport, FrameScanner(limit, compressed, masked=True)
        )
        backend = self.backend = Leg(
            "backend", backendSocket.transport, FrameScanner(limit, compressed, masked=False)
        )
        client.peer, backend.peer = backend, client
        self.activity = self._site.webSocketActivity(self.request)
        # Bytes go straight from each connection to its passage.
        clientPassage, backendPassage = self.passage(client), self.passage(backend)
        clientEarly = channel.upgrade(_Receiver(clientPassage, partial(self.lost, client)))
        backendSocket.relayTo(_Receiver(backendPassage, partial(self.lost, backend)))
        for leg in (client, backend):
            # A message passage calls forward with frames of its own: only
            # reads relayed as they are size the reads.
            startReading(leg, route.wsBufferSize, self.messages is None)
        client.transport.registerProducer(_Producer(backend.transport), True)
        backend.transport.registerProducer(_Producer(client.transport), True)
        self._site.webSocketOpened(self, channel)
        self._openedAt = self._reactor.seconds()
        metrics = getattr(self.request, "routeMetrics", None)
        if metrics is not None:
            self.counter = metrics.webSocketOpened(self.counts)
        if route.wsPingInterval:
            self._ticker = Deadline(self._reactor)
            self._ticker.start(route.wsPingInterval, self._ping)
        if route.wsIdleTimeout:
            self._idle = Deadline(self._reactor)
            self._idle.start(route.wsIdleTimeout, self._idleTimedOut)
        if clientEarly:
            clientPassage(clientEarly)
        if backendEarly and not backend.gone:
            backendPassage(backendEarly)

    # Frames.

    def passage(self, leg):
        """
        Where the bytes from C{leg}'s peer go: L{forward}, which relays
        frames as they are.

        This is the seam for a feature that must see whole messages: a
        passage that assembles the frames of C{leg}'s peer into messages
        (unmasked, and inflated with L{deflateParameters} when compressed),
        and writes each message it lets through to the other peer as frames
        of its own, in the same relay, with the same closing, pings, limits
        and backpressure.

        Bytes from a websocket whose route records its last activity (a
        route added through the API) go through L{_touching} first, so
        that other websockets pay nothing for it.

        @return: a callable taking the bytes.
        """
        if self.messages is not None:
            passage = self.messages.passage(leg)
        else:
            passage = partial(self.forward, leg)
        if self.activity is not None:
            return _touching(passage, self.activity)
        return passage

    def forward(self, leg, data):
        """
        Bytes from C{leg}'s peer: relay them to the other peer as they are.
        When they are a read of C{leg}'s connection (not a message passage's
        frames), that read may change the read size
        (L{proxyws.wsreads.readSizeAfter}).
        """
        if leg.closeReceived:
            return  # nothing counts after a peer's own close frame
        size = len(data)
        if size >= leg.readSize or (leg.grown and size < self._route.wsBufferSize):
            resize(leg, size, self._route.wsBufferSize)
        scanner = leg.scanner
        try:
            boundary = scanner.feed(data)
        except MessageTooBig as e:
            self._tooBig(leg, data, e.offset)
            return
        except BadFrame as e:
            self._badFrame(leg, data, e)
            return
        other = leg.peer
        if not other.gone:
            if other.closeSent:
                # Only the proxy's own close may still be on its way there.
                if other.pending and boundary >= 0:
                    self._write(other, data[:boundary])
                    self._flush(other)
                    self._checkDone(other)
            else:
                if scanner.closeEnd >= 0:
                    data = data[: scanner.closeEnd]
                if other.pending and boundary >= 0:
                    self._write(other, data[:boundary])
                    self._flush(other)
                    self._write(other, data[boundary:])
                else:
                    writeNow(other.transport, data)
                    other.sent += len(data)
        if boundary >= 0 and self._idle is not None:
            self._idle.restart(self._route.wsIdleTimeout)
        if scanner.controls:
            for opcode, payload in scanner.controls:
                if opcode == CLOSE:
                    self._closeReceived(leg, payload)
                elif opcode == PONG and leg.waiting == "pong":
                    leg.waiting = None
                    leg.deadline.stop()

    def counts(self):
        """
        @return: C{(messagesIn, bytesIn, messagesOut, bytesOut)} so far:
            data messages and their payload bytes from the client (in) and
            from the backend (out), as the metrics read them.
        """
        fromClient, fromBackend = self.client.counting, self.backend.counting
        return (fromClient.messages, fromClient.payload, fromBackend.messages, fromBackend.payload)

    def _write(self, leg, data):
        if data:
            leg.transport.write(data)
            leg.sent += len(data)

    def _flush(self, leg):
        pending, leg.pending = leg.pending, None
        for frame in pending:
            self._write(leg, frame)

    def _send(self, leg, opcode, payload):
        """
        Send a frame of the proxy's own to C{leg}'s peer, between two of the
        frames relayed to it.
        """
        frame = controlFrame(opcode, payload, leg.mask())
        if leg.peer.scanner.atBoundary() or leg.peer.gone:
            self._write(leg, frame)
        elif leg.pending is None:
            leg.pending = [frame]
        else:
            leg.pending.append(frame)

    def _wait(self, leg, what, seconds, callback):
        if leg.deadline is None:
            leg.deadline = Deadline(self._reactor)
        leg.waiting = what
        leg.deadline.start(seconds, callback, leg)

    # Closing.

    def _sendClose(self, leg, code, reason):
        """
        Send C{leg}'s peer a close frame of the proxy's own, and wait for
        its answer.
        """
        leg.closeSent = True
        self._send(leg, CLOSE, closePayload(code, reason))
        self._wait(leg, "close", CLOSE_TIMEOUT, self._closeTimedOut)
        self._checkDone(leg)

    def _closeReceived(self, leg, payload):
        """
        A close frame from C{leg}'s peer has been read (and relayed to the
        other peer, unless that one had been sent a close already).
        """
        code, reason = parseClose(payload)
        self._note(leg, code, reason.decode("utf-8", "replace"))
        leg.closeReceived = True
        other = leg.peer
        if not other.closeSent and not other.gone:
            other.closeSent = True
            self._wait(other, "close", CLOSE_TIMEOUT, self._closeTimedOut)
        if leg.waiting == "pong":
            leg.waiting = None
            leg.deadline.stop()
        self._checkDone(leg)
        self._checkDone(other)

    def _checkDone(self, leg):
        """
        Close C{leg}'s connection once its close handshake is over.
        """
        if leg.closeSent and leg.closeReceived and not leg.gone and not leg.pending:
            if leg.deadline is not None:
                leg.deadline.stop()
            leg.waiting = None
            leg.transport.loseConnection()

    def _closeTimedOut(self, leg):
        """
        C{leg}'s peer did not answer a close frame in time: close it, and
        answer for it the other peer that is waiting.
        """
        leg.waiting = None
        self._note(leg, None, "no answer to a close frame in time")
        leg.transport.abortConnection()

    def closeBoth(self, code, reason, why):
        """
        The proxy closes the websocket (idle, too big, shutting down): a
        close frame to both peers, and no more data either way.

        @param reason: the close reason (text).
        @param why: what the log says.
        """
        if self._why is None:
            self._why = why
        for leg in (self.client, self.backend):
            if not leg.gone and not leg.closeSent:
                self._sendClose(leg, code, reason.encode("utf-8"))

    def refuse(self, leg, code, text):
        """
        A passage refuses what C{leg}'s peer sent (a message too big once
        inflated): nothing more is read from it, and both peers get a close
        frame with C{code}.  The passage writes whole frames only, so the
        other peer is at a frame boundary.

        @param text: the close reason (text).
        """
        self._note(leg, code, text)
        leg.closeReceived = True
        self.closeBoth(code, text, self._why)

    def broken(self, leg, text):
        """
        A passage found a frame no peer may send from C{leg}'s peer: drop
        both connections, as for the frames L{forward} refuses.
        """
        self._note(leg, 1002, text)
        self.abort()

    def _tooBig(self, leg, data, offset):
        """
        C{leg}'s peer sent a message over the route's C{max_message_size}:
        close both sides with 1009.

        @param offset: where the frame that went over starts in C{data}, or
            -1 when it started in earlier bytes (the other peer is then in
            the middle of a frame, and can only be cut off).
        """
        text = "message larger than {} bytes".format(self._route.maxMessageSize)
        self._note(leg, 1009, text)
        other = leg.peer
        if offset >= 0 and not other.closeSent and not other.gone:
            self._write(other, data[:offset])
            if other.pending:
                self._flush(other)
        elif not other.gone:
            other.transport.abortConnection()
        # Nothing more of this message is read.
        leg.closeReceived = True
        self.closeBoth(1009, text, self._why)

    def _badFrame(self, leg, data, error):
        """
        C{leg}'s peer sent a frame no peer may send: close both sides with
        1002 (protocol error), relaying the whole frames before it.
        """
        text = "proxyws: {} sent an invalid frame".format(leg.side)
        self._note(leg, 1002, str(error))
        other = leg.peer
        if error.offset >= 0 and not other.closeSent and not other.gone:
            self._write(other, data[: error.offset])
            if other.pending:
                self._flush(other)
        elif not other.gone:
            other.transport.abortConnection()
        # Nothing more of that peer's stream can be read.
        leg.closeReceived = True
        self.closeBoth(1002, text, self._why)

    def _note(self, leg, code, reason):
        """
        Remember the first close as the reason the websocket closed.
        """
        if self._why is None:
            if code is None:
                self._why = "{}: {}".format(leg.side, reason)
            else:
                self._why = "{} closed with {} {!r}".format(leg.side, code, reason)

    # Timers.

    def _ping(self):
        """
        Ping both peers; one that does not answer in time is gone.
        """
        self._ticker.start(self._route.wsPingInterval, self._ping)
        for leg in (self.client, self.backend):
            if not leg.gone and not leg.closeSent and leg.waiting is None:
                self._send(leg, PING, PING_PAYLOAD)
                self._wait(leg, "pong", self._route.wsPingTimeout, self._pingMissed)

    def _pingMissed(self, leg):
        leg.waiting = None
        _log.info("websocket {side}: no pong within the ping timeout", side=leg.side)
        if self._why is None:
            self._why = "{} lost: ping timeout".format(leg.side)
        self._lostText = "proxyws: {} ping timeout".format(leg.side)
        leg.transport.abortConnection()

    def _idleTimedOut(self):
        self.closeBoth(1001, "proxyws: idle timeout", "idle timeout")

    # Connections ending.

    _lostText = None

    def lost(self, leg, reason=None):
        """
        C{leg}'s connection is gone: speak for it to the other peer if it
        left without a close handshake, and finish when both are gone.
        """
        leg.gone = True
        leg.waiting = None
        if leg.deadline is not None:
            leg.deadline.cancel()
        other = leg.peer
        if other.gone:
            self._finished()
            return
        # The gone leg no longer produces: let the other read its close.
        other.transport.unregisterProducer()
        other.transport.resumeProducing()
        if leg.closeReceived or other.closeSent:
            return  # the other peer has its close frame, or is answering one
        code, text = LOST[leg.side]
        if leg.side == "backend" and self.counter is not None:
            self.request.routeMetrics.backendError("broken")
        text = self._lostText or text
        if self._why is None:
            self._why = "{} lost: connection closed".format(leg.side)
        if not leg.scanner.atBoundary():
            # Cut off inside a frame: no close frame can follow.  The other
            # peer gets what was relayed, then the end of its connection
            # without a close frame (1006 to a websocket client), which no
            # client can take for the end of the frame; not a reset, which
            # would throw away what it has not read yet (whole messages,
            # even the 101).  One that does not take it in time is cut off.
            # The end stands for the close both ways: nothing more is sent
            # to it (a TCP transport takes writes until it is closed, and a
            # close frame of the proxy's would be read as the rest of the
            # frame), and nothing more read from it counts.
            other.closeSent = other.closeReceived = True
            self._wait(other, "close", CLOSE_TIMEOUT, self._closeTimedOut)
            _endWriting(other.transport)
            return
        self._sendClose(other, code, text.encode("utf-8"))

    def _finished(self):
        for deadline in (self._ticker, self._idle, self._retirement, self._lifetime):
            if deadline is not None:
                deadline.cancel()
        self._ticker = self._idle = self._retirement = self._lifetime = None
        request = self.request
        site = self._site
        if self.messages is not None:
            self.messages.finished()
        if self.counter is not None:
            self.counter.closed(self._reactor.seconds() - self._openedAt)
        # The line first: the site may finish a graceful stop (and close
        # the log) when it hears the last websocket is closed.
        site.log(request, status=101, size=self.client.sent)
        site.webSocketClosed(self)
        for callback in self.whenFinished:
            callback()
        _log.info(
            "websocket {uri} to {url} closed: {why}",
            uri=request.uri.decode("latin-1"),
            url=self.backendURL,
            why=self._why or "closed",
        )

    backendURL = ""

    def abort(self):
        """
        Drop both connections at once (a protocol error, or the shutdown
        deadline has passed).
        """
        for leg in (self.client, self.backend):
            if not leg.gone:
                leg.transport.abortConnection()

    def retire(self, grace):
        """
        A reload removed this websocket's route: close both legs with 1001
        in C{grace} seconds.
        """
        self.retiring = True
        self._retirement = Deadline(self._reactor)
        self._retirement.start(grace, self._retired)

    def _retired(self):
        self.closeBoth(1001, "proxyws: route removed by a reload", "route removed by a reload")

    _retirement = None

    # The longest a websocket may stay open.

    _lifetime = None

    def limitLifetime(self, seconds):
        """
        Close both legs with 1001 once the websocket has been open for
        C{seconds} (C{[server] max_websocket_lifetime}), whatever flows.
        """
        self._lifetime = Deadline(self._reactor)
        self._lifetime.start(seconds, self._lifetimeOver, seconds)

    def _lifetimeOver(self, seconds):
        code, text = LIFETIME
        why = "open longer than max_websocket_lifetime ({:g} s)".format(seconds)
        self.closeBoth(code, text, why)

    def goAway(self):
        """
        The server is stopping: close both legs with 1001.
        """
        code, text = SHUTDOWN
        self.closeBoth(code, text, "server shutting down")


def _endWriting(transport):
    """
    Close a connection once what waits to be written to it is, reading on
    (and dropping what comes) until its peer closes too, or is cut off.

    Closing a socket with bytes unread resets the connection, and the reset
    throws away what the peer had not taken yet: over TCP only the writing
    ends (a FIN).  TLS reads on by itself until the peer's close_notify.
    """
    endWriting = getattr(transport, "loseWriteConnection", None)
    if endWriting is None or ISSLTransport.providedBy(transport):
        transport.loseConnection()
    else:
        endWriting()


def _touching(passage, activity):
    """
    A passage that records activity after handing the bytes on.

    @param passage: the passage (a callable taking the bytes).
    @param activity: a callable without arguments.
    """

    def touched(data):
        passage(data)
        activity()

    return touched


class _Receiver:
    """
    What a leg's connection delivers its bytes and its end to.
    """

    __slots__ = ("dataReceived", "connectionLost")

    def __init__(self, dataReceived, connectionLost):
        self.dataReceived = dataReceived
        self.connectionLost = connectionLost
