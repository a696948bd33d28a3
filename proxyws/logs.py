"""
proxyws's operational log, and how much of it is written.

Every proxyws module logs through a L{ProxyLogger}.  C{[server] log_level}
sets the least severe level written (nginx's C{error_log} level, Apache's
C{LogLevel}); events below it are dropped before they are made, so that a
debug message on a per-connection path costs a comparison, not a formatted
line.  Twisted's own messages are written as twistd writes them.
"""

from twisted.logger import Logger, LogLevel

# The level names of the config, least severe first.
LEVELS = ("debug", "info", "warn", "error", "critical")

# The levels not written.
_dropped = frozenset([LogLevel.debug])


def setLevel(name):
    """
    Write proxyws's messages of level C{name} and above.

    @param name: one of L{LEVELS}.
    """
    global _dropped
    index = LEVELS.index(name)
    _dropped = frozenset(LogLevel.levelWithName(level) for level in LEVELS[:index])


class ProxyLogger(Logger):
    """
    A L{Logger} that drops the events below the configured level.
    """

    def emit(self, level, format=None, **kwargs):
        """
        Emit an event unless its level is below the configured one.
        """
        if level in _dropped:
            return
        Logger.emit(self, level, format, **kwargs)
