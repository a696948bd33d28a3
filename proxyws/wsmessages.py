"""
Whole websocket messages, for a route's websocket filters.

A route without websocket filters relays frames as they are
(L{proxyws.wsrelay}).  On a route with them, the relay's passage of each
direction (L{proxyws.wsrelay.Relay.passage}) is a L{MessagePassage}:

  1. the bytes from a peer are checked by a L{FrameScanner} of their own
     (the relay's rules: reserved bits, opcodes, fragmentation, control
     frames) with the route's C{max_message_size}, or
     L{DEFAULT_MESSAGE_LIMIT}, as the limit;
  2. frames are unmasked and data frames reassembled into messages,
     inflated (permessage-deflate, with the parameters both ends agreed for
     that direction: window bits and context takeover) within the same
     limit: a message larger once inflated closes both legs with 1009;
  3. each whole message goes through the route's websocket filters (the
     websocket's L{MessageSession}), in order, one message of a direction
     at a time;
  4. what the filters let through is written to the other peer through
     the relay's own L{proxyws.wsrelay.Relay.forward}, as whole frames, so
     that the relay's closing, pings, size limit, idle timer and
     backpressure work on it unchanged.

A message passed unchanged goes out as the frames it came in, byte for
byte, as long as nothing before it in its direction was changed or dropped
while both ends keep a compression context (the receiver's context holds
what the sender's does only while every message reaches it).  Other
messages go out as one frame of the proxy's own: masked towards the
backend, and deflated again (with that direction's parameters and a
compressor of the proxy's own) when the sender had compressed the message.
Control frames pass at once; a close frame passes after the messages
before it.
"""

import os
import zlib
from collections import deque

from twisted.internet.defer import CancelledError, Deferred

from .errors import BadFrame, MessageTooBig, PluginFailed, PluginTimeout
from .pluginvalues import DROP, Close, Message, WebSocketConnection
from .wsframes import BINARY, CLOSE, CONTINUATION, FrameScanner, parseClose, unmask

# The largest message (in payload bytes, compressed or inflated) a route
# with websocket filters takes when its max_message_size is 0: messages are
# held whole, and a small compressed message may inflate a thousandfold.
DEFAULT_MESSAGE_LIMIT = 16 * 1024 * 1024

# What RFC 7692 7.2.1 strips from the end of each compressed message.
_TAIL = b"\x00\x00\xff\xff"

# The close a websocket gets when one of its filters failed or timed out.
_FAILED = Close(1011, "proxyws: websocket filter failed")
_TIMED_OUT = Close(1011, "proxyws: websocket filter timed out")

# The queue entry of a close frame, behind the messages before it.
_CLOSE = "close"

# What websocket filters see (proxyws.pluginvalues), named here too.
__all__ = ["Message", "MessagePassage", "MessageSession", "WebSocketConnection", "WebSocketFilters"]


def dataFrame(first, payload, maskKey=None):
    """
    The bytes of one frame.

    @param first: the first byte (FIN, RSV1, opcode).
    @param maskKey: a 4-byte key for frames sent to a server, or L{None}.
    """
    size = len(payload)
    bit = 0x80 if maskKey else 0
    if size < 126:
        header = bytes((first, bit | size))
    elif size < 65536:
        header = bytes((first, bit | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((first, bit | 127)) + size.to_bytes(8, "big")
    if maskKey:
        return header + maskKey + unmask(maskKey, payload)
    return header + payload


class _Frames:
    """
    Splits a checked byte stream into whole frames.
    """

    __slots__ = ("_buffer",)

    def __init__(self):
        self._buffer = bytearray()

    def feed(self, data):
        """
        @return: the frames completed by C{data}: C{(first byte, the frame's
            bytes, its unmasked payload)}.
        """
        buffer = self._buffer
        buffer += data
        frames = []
        position, size = 0, len(buffer)
        while size - position >= 2:
            second = buffer[position + 1]
            length = second & 0x7F
            head = 2 + (2 if length == 126 else 8 if length == 127 else 0)
            head += 4 if second & 0x80 else 0
            if size - position < head:
                break
            if length == 126:
                length = int.from_bytes(buffer[position + 2 : position + 4], "big")
            elif length == 127:
                length = int.from_bytes(buffer[position + 2 : position + 10], "big")
            end = position + head + length
            if end > size:
                break
            raw = bytes(buffer[position:end])
            payload = raw[head:]
            if second & 0x80:
                payload = unmask(raw[head - 4 : head], payload)
            frames.append((raw[0], raw, payload))
            position = end
        del buffer[:position]
        return frames


def _parameters(deflate, side):
    """
    The permessage-deflate parameters of the messages C{side} sends.

    @param deflate: the agreed L{proxyws.wscompress.Offer}, or L{None}.
    @return: C{(window bits, context takeover)}, or L{None} without
        compression.
    """
    if deflate is None:
        return None
    prefix = b"client_" if side == "client" else b"server_"
    bits = deflate.bits(prefix + b"max_window_bits") or 15
    return bits, prefix + b"no_context_takeover" not in deflate.parameters


class WebSocketFilters:
    """
    The websocket filters of a route (its websocket handler's C{messages}).
    """

    def __init__(self, plugins, route, clock):
        """
        @param plugins: the L{proxyws.plugins.Plugin}s, in order.
        @param route: the L{proxyws.values.Route}.
        @param clock: the reactor (the connections' C{clock}).
        """
        self.plugins = plugins
        self.route = route
        self.clock = clock
        self.limit = route.maxMessageSize or DEFAULT_MESSAGE_LIMIT

    def session(self, relay, request, subprotocol):
        """
        @return: the L{MessageSession} of a websocket about to be relayed.
        """
        from .filters import pluginRequest

        view = pluginRequest(request, self.route)
        connection = WebSocketConnection(view, subprotocol, self.route, self.clock)
        return MessageSession(self, relay, connection)


class MessageSession:
    """
    The websocket filters of one websocket, and its two passages.

    @ivar connection: the L{WebSocketConnection}.
    @ivar ready: whether every filter's C{opened} is done.
    @ivar closing: whether a filter closed the websocket.
    """

    def __init__(self, filters, relay, connection):
        self._filters = filters
        self._plugins = filters.plugins
        self._relay = relay
        self.connection = connection
        self._passages = []
        self.ready = False
        self.closing = False
        self._done = False
        self._opening = None
        # The first close a peer (or a filter) sent on its own, and the
        # first sent in answer to one.
        self._close = self._answer = None

    def passage(self, leg):
        """
        The passage of the bytes from C{leg}'s peer (see
        L{proxyws.wsrelay.Relay.passage}); the filters' C{opened} runs once
        both passages are made.
        """
        relay = self._relay
        passage = MessagePassage(
            self, relay, leg, _parameters(relay.deflateParameters, leg.side), self._filters.limit
        )
        self._passages.append(passage)
        if len(self._passages) == 2:
            self._open(0)
        return passage

    # The filters' calls.

    def _open(self, start):
        plugins = self._plugins
        for position in range(start, len(plugins)):
            plugin = plugins[position]
            try:
                outcome = plugin.call("opened", self.connection)
            except PluginFailed as e:
                self.fail(e)
                return
            if isinstance(outcome, Deferred):
                self._opening = outcome
                outcome.addCallback(self._opened, position).addErrback(self._failed)
                return
            if not self._openedWith(plugin, outcome):
                return
        self.ready = True
        for passage in self._passages:
            passage.run()

    def _opened(self, outcome, position):
        self._opening = None
        if self._openedWith(self._plugins[position], outcome):
            self._open(position + 1)

    def _openedWith(self, plugin, outcome):
        """
        @return: whether to go on after C{opened} answered C{outcome}.
        """
        if outcome is None:
            return True
        if isinstance(outcome, Close):
            self.close(outcome)
        else:
            self.fail(plugin.failed("opened returned {!r}, not None or a Close".format(outcome)))
        return False

    def filterMessage(self, message, start=0, original=None):
        """
        Run C{message} through the filters from C{start} on.

        @return: L{None} (pass it), a L{Message} (send that instead),
            L{DROP}, a L{Close}, or a L{Deferred} firing with one of those.
        @raise PluginFailed: when a filter failed (logged).
        """
        original = original or message
        plugins = self._plugins
        for position in range(start, len(plugins)):
            plugin = plugins[position]
            outcome = plugin.call("message", self.connection, message)
            if outcome is None:
                continue
            if isinstance(outcome, Deferred):
                return outcome.addCallback(self._filtered, position, message, original)
            if outcome is DROP or isinstance(outcome, Close):
                return outcome
            message = self._replacement(plugin, outcome, message)
        return None if message is original else message

    def _filtered(self, outcome, position, message, original):
        if outcome is DROP or isinstance(outcome, Close):
            return outcome
        if outcome is not None:
            message = self._replacement(self._plugins[position], outcome, message)
        return self.filterMessage(message, position + 1, original)

    def _replacement(self, plugin, outcome, message):
        if (
            isinstance(outcome, Message)
            and isinstance(outcome.payload, bytes)
            and outcome.direction == message.direction
        ):
            return outcome
        raise plugin.failed(
            "message returned {!r}: not None, DROP, a Close or a Message of the same "
            "direction".format(outcome)
        )

    def _failed(self, failure):
        self._opening = None
        if failure.check(PluginFailed):
            self.fail(failure.value)
        elif not failure.check(CancelledError):
            return failure
        return None

    # Closing.

    def fail(self, error):
        """
        A filter failed (logged already): close both legs with 1011.
        """
        self.close(_TIMED_OUT if isinstance(error, PluginTimeout) else _FAILED, "failed")

    def close(self, close, why="closed"):
        """
        A filter closes the websocket: a close frame to both peers, and no
        more messages either way.

        @param close: the L{Close}.
        """
        if self.closing or self._done:
            return
        self.closing = True
        self.closeSeen(close.code, close.reason, False)
        self._relay.closeBoth(
            close.code,
            close.reason,
            "websocket filter {} with {} {!r}".format(why, close.code, close.reason),
        )
        # What waits is dropped; the peers' answering close frames pass.
        for passage in self._passages:
            passage.run()

    def closeSeen(self, code, reason, answer):
        """
        A close frame went by, or a filter closed.

        @param answer: whether it answers a close sent before.
        """
        if answer:
            self._answer = self._answer or (code or 1005, reason)
        elif self._close is None:
            self._close = (code or 1005, reason)

    def _closedWith(self):
        """
        What C{closed} is told: the first close a peer or a filter sent on
        its own; else 1006 when a connection ended without a close frame;
        else the first answer to the proxy's own close (an idle timeout, a
        stop).
        """
        if self._close is not None:
            return self._close
        relay = self._relay
        if not (relay.client.closeReceived and relay.backend.closeReceived):
            return (1006, "")
        return self._answer or (1006, "")

    def finished(self):
        """
        Both connections are closed: stop, and tell the filters.
        """
        self._done = True
        if self._opening is not None:
            self._opening.cancel()
        for passage in self._passages:
            passage.stop()
        code, reason = self._closedWith()
        for plugin in self._plugins:
            try:
                outcome = plugin.call("closed", self.connection, code, reason)
            except PluginFailed:
                continue
            if isinstance(outcome, Deferred):
                outcome.addErrback(lambda failure: None)  # logged by Plugin.call


class MessagePassage:
    """
    The bytes one peer sends, as messages through the filters to the other
    peer (see the module docstring).
    """

    def __init__(self, session, relay, leg, parameters, limit):
        """
        @param leg: the relay's L{proxyws.wsrelay.Leg} the bytes come from.
        @param parameters: C{(window bits, context takeover)} of this
            direction's compression, or L{None}.
        @param limit: the largest message, in payload bytes.
        """
        self._session = session
        self._relay = relay
        self._leg = leg
        self._direction = "in" if leg.side == "client" else "out"
        self._limit = limit
        # The relay's own rules: a client's frames masked, a server's not.
        self._scanner = FrameScanner(limit, parameters is not None, masked=leg.side == "client")
        # The metrics count what the peer sent, before any filter.
        leg.counting = self._scanner
        self._frames = _Frames()
        self._bits, self._takeover = parameters or (15, False)
        self._inflater = self._deflater = None
        self._queue = deque()
        self._waiting = None
        self._paused = False
        self._stopped = False
        self._altered = False
        self._message = None
        self._size = 0

    def __call__(self, data):
        """
        Bytes from the peer.
        """
        if self._stopped:
            return
        try:
            self._scanner.feed(data)
        except MessageTooBig:
            self._refuse(1009, "message larger than {} bytes".format(self._limit))
            return
        except BadFrame as e:
            self._stopped = True
            self._relay.broken(self._leg, str(e))
            return
        if self._scanner.closeEnd >= 0:
            data = data[: self._scanner.closeEnd]
        for first, raw, payload in self._frames.feed(data):
            self._frame(first, raw, payload)
            if self._stopped:
                break
        self.run()
        session = self._session
        if self._waiting is not None or (self._queue and not (session.ready or session.closing)):
            self._pause()

    def _frame(self, first, raw, payload):
        opcode = first & 0x0F
        if opcode & 0x8:
            if opcode == CLOSE:
                self._stopped = True
                code, reason = parseClose(payload)
                reason = reason.decode("utf-8", "replace")
                self._session.closeSeen(code, reason, self._leg.closeSent)
                self._queue.append((_CLOSE, raw))
            else:
                self._relay.forward(self._leg, raw)  # pings and pongs at once
            return
        if opcode != CONTINUATION:
            self._begin(opcode == BINARY, bool(first & 0x40))
        message = self._message
        message[2].append(raw)
        if message[1]:
            payload = self._inflate(payload, first & 0x80)
            if payload is None:
                return
        message[3].append(payload)
        if first & 0x80:
            binary, compressed, frames, parts = message
            self._message = None
            whole = Message(self._direction, binary, b"".join(parts), compressed)
            self._queue.append((whole, frames))

    def _begin(self, binary, compressed):
        # [binary, compressed, the frames' bytes, the payload's pieces]
        self._message = [binary, compressed, [], []]
        self._size = 0
        if compressed and (self._inflater is None or not self._takeover):
            self._inflater = zlib.decompressobj(-max(self._bits, 9))

    def _inflate(self, data, fin):
        """
        Inflate the payload of one frame of a compressed message, within
        the limit.

        @return: the inflated bytes, or L{None} when the websocket was
            closed for it.
        """
        budget = self._limit - self._size
        try:
            out = self._inflater.decompress(data + _TAIL if fin else data, budget + 1)
        except zlib.error:
            self._refuse(1007, "invalid compressed message")
            return None
        if len(out) > budget or self._inflater.unconsumed_tail:
            self._refuse(1009, "message larger than {} bytes".format(self._limit))
            return None
        self._size += len(out)
        return out

    def _refuse(self, code, text):
        self._stopped = True
        self._queue.clear()
        self._relay.refuse(self._leg, code, text)

    # Through the filters, and on.

    def run(self):
        """
        Send what the filters let through, in order, until one of them
        makes a message wait.
        """
        session, queue = self._session, self._queue
        while queue and self._waiting is None and (session.ready or session.closing):
            item, frames = queue[0]
            if item is _CLOSE:
                queue.popleft()
                self._relay.forward(self._leg, frames)
                continue
            other = self._leg.peer
            if session.closing or other.closeSent or other.gone:
                queue.popleft()  # nobody to give it to any more
                continue
            try:
                outcome = session.filterMessage(item)
            except PluginFailed as e:
                session.fail(e)
                return
            if outcome is not None and isinstance(outcome, Deferred):
                self._waiting = outcome
                outcome.addCallbacks(self._filtered, self._failed)
                return
            queue.popleft()
            self._send(item, frames, outcome)
        if not queue and self._waiting is None:
            self._resume()

    def _filtered(self, outcome):
        self._waiting = None
        if self._stopped and not self._queue:
            return
        item, frames = self._queue.popleft()
        self._send(item, frames, outcome)
        self.run()

    def _failed(self, failure):
        self._waiting = None
        if failure.check(CancelledError):
            return None
        if failure.check(PluginFailed):
            self._session.fail(failure.value)
            return None
        return failure

    def _send(self, message, frames, outcome):
        if outcome is None:
            if not self._altered or not self._takeover:
                data = frames[0] if len(frames) == 1 else b"".join(frames)
            else:
                data = self._encode(message, message.compressed)
        elif outcome is DROP:
            self._altered = True
            return
        elif isinstance(outcome, Close):
            self._session.close(outcome)
            return
        else:
            self._altered = True
            data = self._encode(outcome, message.compressed)
        self._relay.forward(self._leg, data)

    def _encode(self, message, compress):
        """
        A message as one frame of the proxy's own: deflated when C{compress}
        (and this direction can be: zlib has no 8-bit window), masked
        towards the backend.
        """
        payload = message.payload
        first = 0x82 if message.binary else 0x81
        if compress and self._bits >= 9:
            deflater = self._deflater
            if deflater is None or not self._takeover:
                deflater = self._deflater = zlib.compressobj(wbits=-self._bits)
            payload = (deflater.compress(payload) + deflater.flush(zlib.Z_SYNC_FLUSH))[:-4]
            first |= 0x40
        maskKey = os.urandom(4) if self._leg.side == "client" else None
        return dataFrame(first, payload, maskKey)

    # Reading from the peer.

    def _pause(self):
        if not self._paused and not self._leg.gone:
            self._paused = True
            self._leg.transport.pauseProducing()

    def _resume(self):
        if self._paused:
            self._paused = False
            if not self._leg.gone:
                self._leg.transport.resumeProducing()

    def stop(self):
        """
        The websocket is over: drop what waits.
        """
        self._stopped = True
        self._queue.clear()
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.cancel()
