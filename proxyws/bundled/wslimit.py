"""
The C{ws-limit} plugin: per-connection limits on websocket messages::

    plugins = [{ name = "ws-limit", max_message_size = 65536,
                 max_messages = 20, per = 1 }]

A message larger than C{max_message_size} bytes (its payload once
inflated) closes both legs with 1009; more than C{max_messages} messages
within C{per} seconds (a token bucket: bursts up to C{max_messages}, then
C{max_messages / per} a second) closes both legs with 1008.  The limits
count the client's messages (C{direction = "in"}, the default), the
backend's (C{"out"}) or both, each direction on its own.
"""

import attr
from zope.interface import implementer

from ..errors import PluginOptionError
from ..interfaces import IWebSocketFilter
from ..pluginvalues import Close

# The directions an option value counts.
_DIRECTIONS = {"in": ("in",), "out": ("out",), "both": ("in", "out")}


@attr.s(slots=True)
class TokenBucket:
    """
    Messages a connection may still send at once, refilled with time.

    @ivar tokens: what is left.
    @ivar when: the clock's time of the last refill.
    """

    tokens = attr.ib()
    when = attr.ib()

    def take(self, now, capacity, rate):
        """
        Take one token, refilling first.

        @return: whether there was one.
        """
        self.tokens = min(capacity, self.tokens + (now - self.when) * rate)
        self.when = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@implementer(IWebSocketFilter)
class MessageLimits:
    """
    Closes a websocket whose messages are too big or come too fast.

    @ivar maxSize: the largest payload, in bytes, or 0 for no limit.
    @ivar maxMessages: messages per C{per} seconds, or 0 for no limit.
    @ivar directions: the directions counted.
    """

    def __init__(self, maxSize=0, maxMessages=0, per=1.0, directions=("in",)):
        self.maxSize = maxSize
        self.maxMessages = maxMessages
        self.per = per
        self.directions = directions

    def opened(self, connection):
        """
        Give the connection a full bucket per direction.
        """
        if self.maxMessages:
            now = connection.clock.seconds()
            connection.state[self] = {
                direction: TokenBucket(self.maxMessages, now) for direction in self.directions
            }

    def message(self, connection, message):
        """
        Let C{message} pass, or close both legs (see the module docstring).
        """
        if message.direction not in self.directions:
            return None
        if self.maxSize and len(message.payload) > self.maxSize:
            return Close(
                1009,
                "message of {} bytes over the limit of {}".format(
                    len(message.payload), self.maxSize
                ),
            )
        if self.maxMessages:
            bucket = connection.state[self][message.direction]
            rate = self.maxMessages / self.per
            if not bucket.take(connection.clock.seconds(), self.maxMessages, rate):
                return Close(
                    1008,
                    "more than {} messages in {:g} s".format(self.maxMessages, self.per),
                )
        return None

    def closed(self, connection, code, reason):
        """
        Forget the connection.
        """
        connection.state.pop(self, None)


def limitPlugin(options):
    """
    The C{ws-limit} plugin's factory.

    @param options: a L{proxyws.plugins.PluginOptions}: C{max_message_size},
        C{max_messages}, C{per} (seconds, default 1) and C{direction}
        (C{"in"}, C{"out"} or C{"both"}).
    @return: a L{MessageLimits}.
    @raise PluginOptionError: for options it cannot use.
    """
    options.checkKeys("max_message_size", "max_messages", "per", "direction")
    maxSize = options.takeNumber("max_message_size", 0, integer=True)
    maxMessages = options.takeNumber("max_messages", 0, integer=True)
    per = options.takeNumber("per", 1.0)
    if per <= 0:
        raise PluginOptionError("per", "{!r} is not a number of seconds above 0".format(per))
    direction = options.takeString("direction", "in")
    if direction not in _DIRECTIONS:
        raise PluginOptionError("direction", "{!r} is not 'in', 'out' or 'both'".format(direction))
    if not maxSize and not maxMessages:
        raise PluginOptionError(None, "give max_message_size, max_messages or both")
    return MessageLimits(maxSize, maxMessages, float(per), _DIRECTIONS[direction])
