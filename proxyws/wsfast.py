"""
The fast mode of the websocket relay: frames pass as they are.

When both legs of a relay are open and their frames need no change (no
compression, or the same compression settings on both legs), each leg's
bytes are written to the other leg unchanged, without unmasking, re-masking
or re-assembling: a client's masked frames are valid for the backend and the
backend's frames are valid for the client.  A L{FrameScanner} per direction
reads only frame headers, so that the proxy can put its own frames (pings,
closes) between two frames and can see close codes and pongs go by.

Close frames pass through like any frame, so codes and reasons reach the
other side unchanged; this module only closes the TCP connections once the
close handshake is over, and speaks for a side that went away without one.
"""

import os
from functools import partial

from .logs import ProxyLogger
from .writes import writeNow
from .wslegs import FastLeg, takeOver
from .wsframes import (
    CLOSE,
    PING,
    PONG,
    FrameScanner,
    MessageTooBig,
    closePayload,
    controlFrame,
    parseClose,
)

# Seconds a leg is given to answer a close frame the proxy sent for its
# partner before its connection is closed anyway.
CLOSE_WAIT = 1.0

_log = ProxyLogger()


class FastRelay:
    """
    Relays frames unchanged between two open legs.

    States: open (frames flow both ways); closing (a close frame has been
    sent to a leg by its partner or by the proxy); closed (both connections
    gone, reported by L{lost}).

    @ivar sentToClient: bytes written to the client in this mode.
    """

    def __init__(self, relay, front, back):
        """
        @param relay: the L{proxyws.wsproxy.Relay}.
        @param front: the client's leg.
        @param back: the backend's leg.
        """
        self._relay = relay
        self._route = relay._route
        self._reactor = relay._reactor
        self.sentToClient = 0
        self._closeFrom = set()
        self._gone = set()
        self._silenced = set()
        self._pingDeadline = {}
        self._pingTimedOut = set()
        self._timers = []
        for name in ("autoPingPendingCall", "autoPingTimeoutCall"):
            for leg in (front, back):
                call = getattr(leg, name, None)
                if call is not None:
                    call.cancel()
                    setattr(leg, name, None)
        front, back = self._slim(front, back)
        self._front = front
        self.legs = (front, back)
        self._pending = {front: [], back: []}
        self._timed = bool(self._route.wsIdleTimeout)
        _log.debug("websocket {uri}: relaying frames as they are", uri=relay.request.uri.decode("latin-1"))
        self._pinger = None
        if self._route.wsPingInterval:
            self._pinger = self._reactor.callLater(self._route.wsPingInterval, self._ping)

    def _slim(self, front, back):
        """
        Put small L{FastLeg}s in place of the two Autobahn protocols, with
        the bytes going straight from the transports to L{forward}.

        @return: the two legs to relay between.
        """
        slimFront = FastLeg(self._relay, "client", front.transport)
        slimBack = FastLeg(self._relay, "backend", back.transport)
        slimBack.dataReceived = partial(self.forward, slimBack)
        channel = self._relay.request.channel
        if channel is None or not takeOver(back, slimBack):
            # Keep the Autobahn protocols as the legs.
            slimFront, slimBack = front, back
        else:
            channel.dataReceived = slimFront.dataReceived = partial(self.forward, slimFront)
            channel.connectionLost = slimFront.connectionLost
            # Let the Autobahn protocols go.  Twisted's endpoint keeps the
            # backend's (as the result of its connection attempt): empty it
            # once Autobahn's call that got us here has returned.
            front.partner = back.partner = None
            self._relay.forgetConnecting()
            self._reactor.callLater(0, back.__dict__.clear)
        for leg, slim in ((front, slimFront), (back, slimBack)):
            leg.fast = True
            leg.slim = slim
            slim.scanner = FrameScanner(self._route.maxMessageSize)
        slimFront.partner, slimBack.partner = slimBack, slimFront
        return slimFront, slimBack

    def forward(self, leg, data):
        """
        Bytes from C{leg}'s peer: relay them to the other leg as they are.
        """
        scanner = leg.scanner
        try:
            boundary = scanner.feed(data)
        except MessageTooBig as e:
            if leg not in self._silenced:
                if e.offset >= 0:
                    self._write(leg.partner, data[: e.offset])
                self._tooBig(leg, e.offset >= 0)
            boundary = None
        except ValueError as e:
            self._relay.noteClose(leg, 1002, str(e).encode("ascii"))
            self._abortBoth()
            return
        if boundary is not None and leg not in self._silenced:
            if self._timed:
                self._relay.activity()
            other = leg.partner
            pending = self._pending[other]
            if pending and boundary >= 0:
                self._write(other, data[:boundary])
                for frame in pending:
                    self._write(other, frame)
                del pending[:]
                self._write(other, data[boundary:])
            else:
                writeNow(other.transport, data)
                if other is self._front:
                    self.sentToClient += len(data)
        if scanner.controls:
            for opcode, payload in scanner.controls:
                if opcode == CLOSE:
                    self._closed(leg, payload)
                elif opcode == PONG:
                    self._ponged(leg)

    def _write(self, leg, data):
        if data:
            leg.transport.write(data)
            if leg is self._front:
                self.sentToClient += len(data)

    def _send(self, leg, opcode, payload):
        """
        Send a frame of the proxy's own to C{leg}'s peer, between two of
        the frames relayed to it.
        """
        frame = controlFrame(opcode, payload, None if leg is self._front else os.urandom(4))
        if leg.partner.scanner.atBoundary() or leg.partner in self._gone:
            self._write(leg, frame)
        else:
            self._pending[leg].append(frame)

    def _closed(self, leg, payload):
        """
        A close frame from C{leg}'s peer has gone by.
        """
        code, reason = parseClose(payload)
        self._relay.noteClose(leg, code, reason)
        self._closeFrom.add(leg)
        other = leg.partner
        if other in self._gone or other in self._closeFrom:
            # The close handshake is over: close this side's connection.
            leg.transport.loseConnection()
            if other not in self._gone:
                other.transport.loseConnection()

    def lost(self, leg):
        """
        C{leg}'s connection is gone: close the other side's as RFC 6455
        wants, speaking for a side that left without a close frame.
        """
        self._gone.add(leg)
        self._stopPinging(leg)
        other = leg.partner
        if other in self._gone:
            self._stop()
            return
        if leg in self._closeFrom and other in self._closeFrom:
            other.transport.loseConnection()
            return
        if leg not in self._closeFrom:
            code, text = self._relay.lostCode(
                leg, "ping timeout" if leg in self._pingTimedOut else None
            )
            if not leg.scanner.atBoundary():
                # Cut off inside a frame: no close frame can follow.
                other.transport.abortConnection()
                return
            self._send(other, CLOSE, closePayload(code, text.encode("utf-8")))
        self._later(other.transport.loseConnection)

    def closeBoth(self, code, reason):
        """
        The proxy closes the websocket (idle, too big, shutting down): send
        a close frame to both sides and stop relaying data.
        """
        payload = closePayload(code, reason)
        for leg in (self._front, self._front.partner):
            if leg not in self._gone:
                self._silenced.add(leg.partner)
                self._send(leg, CLOSE, payload)
                self._closeFrom.add(leg.partner)
                self._later(leg.transport.loseConnection)

    def _tooBig(self, leg, cut):
        """
        C{leg}'s peer sent a message over the route's C{max_message_size}:
        close both sides with 1009.

        @param cut: whether what was relayed of it ends between two frames,
            so that the other side can be sent a close frame too.
        """
        text = "message larger than {} bytes".format(self._route.maxMessageSize)
        payload = closePayload(1009, text.encode("ascii"))
        self._relay.noteClose(leg, 1009, text.encode("ascii"))
        other = leg.partner
        self._silenced.add(leg)
        # As if the other side had sent it: its answer ends the handshake.
        self._closeFrom.add(other)
        self._send(leg, CLOSE, payload)
        self._later(leg.transport.loseConnection)
        if cut:
            self._closeFrom.add(leg)
            self._silenced.add(other)
            mask = None if other is self._front else os.urandom(4)
            self._write(other, controlFrame(CLOSE, payload, mask))
            self._later(other.transport.loseConnection)
        else:
            other.transport.abortConnection()

    def _abortBoth(self):
        for leg in (self._front, self._front.partner):
            if leg not in self._gone:
                leg.transport.abortConnection()

    def _later(self, call):
        self._timers.append(self._reactor.callLater(CLOSE_WAIT, call))

    def _ping(self):
        """
        Ping both peers; one that does not answer in time is gone.
        """
        self._pinger = self._reactor.callLater(self._route.wsPingInterval, self._ping)
        for leg in (self._front, self._front.partner):
            if leg in self._gone or leg in self._pingDeadline:
                continue
            self._send(leg, PING, b"proxyws")
            self._pingDeadline[leg] = self._reactor.callLater(
                self._route.wsPingTimeout, self._pingMissed, leg
            )

    def _ponged(self, leg):
        call = self._pingDeadline.pop(leg, None)
        if call is not None and call.active():
            call.cancel()

    def _pingMissed(self, leg):
        self._pingDeadline.pop(leg, None)
        self._pingTimedOut.add(leg)
        _log.info("websocket {side}: no pong within the ping timeout", side=leg.side)
        leg.transport.abortConnection()

    def _stopPinging(self, leg):
        call = self._pingDeadline.pop(leg, None)
        if call is not None and call.active():
            call.cancel()

    def _stop(self):
        """
        Both connections are gone: cancel every timer.
        """
        for call in [self._pinger, *self._timers, *self._pingDeadline.values()]:
            if call is not None and call.active():
                call.cancel()
        self._pinger = None
        self._timers = []
        self._pingDeadline = {}
