"""
Every private name of another library that proxyws uses, in one place.

Each use is listed in L{PRIVATE_NAMES} with what it is for and what
happens without it; C{tests/test_internals.py} checks each against the
installed versions and fails with a message naming it when an upgrade
removes it.  Where a public path exists, it is the fallback: proxyws then
runs slower, never wrongly.

The uses:
  - L{writeNow} reads the write queue of Twisted's C{FileDescriptor}, to
    send at once when nothing is queued (fallback: C{transport.write}).
  - L{parseExpression} is the standard library's own regular expression
    parser (C{re._parser}), for the check of C{match} expressions at load
    (L{proxyws.patterns}); no fallback.
  - L{quietAutobahnDebugLogs} patches C{autobahn.websocket.protocol}'s
    C{pformat} (a module attribute, not a private name, but a patch of
    another library), applied when the service starts.

Twisted's HTTP parsing state and transfer decoders are no longer used:
requests and bodies are read by L{proxyws.framing} and L{proxyws.bodies}.
"""

import re
from pprint import pformat

from twisted.internet import tcp
from twisted.internet.abstract import FileDescriptor

# (owner, name, what proxyws uses it for, what happens without it).
PRIVATE_NAMES = [
    (FileDescriptor, "_tempDataBuffer", "writing to a socket at once", "transport.write"),
    (re, "_parser", "checking match expressions at load", None),
]


def hasName(owner, name):
    """
    Whether C{owner} (a class or module) has C{name}, as an attribute or
    as an instance attribute its C{__init__} or another method assigns.
    """
    if hasattr(owner, name):
        return True
    if isinstance(owner, type):
        short = name.split("__", 1)[-1] if name.startswith("_" + owner.__name__ + "__") else name
        for cls in owner.__mro__:
            for value in vars(cls).values():
                code = getattr(value, "__code__", None)
                if code is not None and (name in code.co_names or short in code.co_names):
                    return True
    return False


def _present(names):
    return all(hasName(owner, name) for owner, name, _, _ in PRIVATE_NAMES if name in names)


# Writing to TCP sockets at once.

_TCP = (tcp.Server, tcp.Client)
_DIRECT_WRITES = _present({"_tempDataBuffer"})


def writeNow(transport, data):
    """
    Write C{data} to C{transport}, at once when nothing is queued on it.

    Twisted's C{transport.write} queues the bytes and asks the reactor to
    say when the socket is writable: two more epoll calls and one more turn
    of the event loop for every write.  On the proxy's hot paths the socket
    almost always has room, so this sends at once and queues only what the
    socket does not take.
    """
    if (
        _DIRECT_WRITES
        and transport.__class__ in _TCP
        and not transport._tempDataBuffer
        and transport.offset == len(transport.dataBuffer)
        and transport.connected
        and not transport.disconnecting
    ):
        try:
            sent = transport.socket.send(data)
        except OSError:
            sent = 0  # full (BlockingIOError), or broken: the reactor reports it
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


# The standard library's regular expression parser.


def parseExpression(pattern):
    """
    Parse C{pattern} with Python's own regular expression parser, the one
    C{re.compile} runs (undocumented).

    @param pattern: the expression, as L{bytes}.
    @return: C{(flags, nodes, maxRepeat)}: the global flags, the parsed
        nodes, and the number that stands for an open-ended count.
    @raise re.error: for an expression that does not compile.
    """
    parser = re._parser
    tree = parser.parse(pattern)
    return tree.state.flags, tree, parser.MAXREPEAT


# Autobahn's debug logs.


class _LazyFormat:
    """
    Formats its value with C{pprint.pformat} only if a log line is written.
    """

    __slots__ = ("_value",)

    def __init__(self, value):
        self._value = value

    def __format__(self, spec):
        return format(pformat(self._value), spec)

    def __str__(self):
        return pformat(self._value)

    __repr__ = __str__


def quietAutobahnDebugLogs():
    """
    Make Autobahn format its settings for a debug line only when the line
    is written.

    Autobahn passes C{pformat(...)} of its settings to debug log calls on
    every connection, whether or not debug lines are kept: a third of the
    proxy's CPU per websocket handshake.  This replaces the C{pformat} its
    protocol module calls with L{_LazyFormat}; it is applied when the
    service starts (and again harmlessly), never at import.
    """
    from autobahn.websocket import protocol

    protocol.pformat = _LazyFormat
