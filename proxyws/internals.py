"""
Every private name of Twisted, Autobahn and the standard library that
proxyws uses, in one place.

Each use is listed in L{PRIVATE_NAMES} with what it is for and what
happens without it; C{tests/test_internals.py} checks each against the
installed versions and fails with a message naming it when an upgrade
removes it.  Where a public path exists, it is the fallback: proxyws then
runs slower, never wrongly.

The uses:
  - L{writeNow} reads the write queue of Twisted's C{FileDescriptor}, to
    send at once when nothing is queued (fallback: C{transport.write}).
  - L{wholeHeadReady} and L{dispatchWholeHead} read and set the line parser
    state of C{HTTPChannel}, to parse a whole body-less request head in one
    pass (fallback: Twisted's line parser), and L{requestLine} reads the
    request line C{HTTPChannel} keeps while the body arrives (no fallback:
    a streamed request body needs it).
  - L{ChunkedDecoder} and L{IdentityDecoder} are twisted.web's transfer
    decoders for backend response bodies (no fallback).
  - L{quietAutobahnDebugLogs} patches C{autobahn.websocket.protocol}'s
    C{pformat} (a module attribute, not a private name, but a patch of
    another library), applied when the service starts.
"""

from pprint import pformat

from twisted.internet import tcp
from twisted.internet.abstract import FileDescriptor
from twisted.protocols.basic import LineReceiver
from twisted.web import http

# (owner, name, what proxyws uses it for, what happens without it).
PRIVATE_NAMES = [
    (FileDescriptor, "_tempDataBuffer", "writing to a socket at once", "transport.write"),
    (http.HTTPChannel, "_HTTPChannel__first_line", "one-pass request heads", "Twisted's parser"),
    (LineReceiver, "_buffer", "one-pass request heads", "Twisted's parser"),
    (LineReceiver, "_busyReceiving", "one-pass request heads", "Twisted's parser"),
    (http.HTTPChannel, "_handlingRequest", "one-pass request heads", "Twisted's parser"),
    (http.HTTPChannel, "_command", "streamed request bodies", None),
    (http.HTTPChannel, "_path", "streamed request bodies", None),
    (http.HTTPChannel, "_version", "streamed request bodies", None),
    (http, "_ChunkedTransferDecoder", "chunked response bodies", None),
    (http, "_IdentityTransferDecoder", "response bodies with a length", None),
    (http, "_MalformedChunkedDataError", "chunked response bodies", None),
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


# The line parser state of HTTPChannel.

FAST_HEADS = _present(
    {"_HTTPChannel__first_line", "_buffer", "_busyReceiving", "_handlingRequest"}
)


def wholeHeadReady(channel):
    """
    Whether C{channel}'s parser waits for the first line of a request with
    nothing buffered, so that a whole head may be parsed in one pass.
    """
    return (
        FAST_HEADS
        and channel._HTTPChannel__first_line
        and channel.line_mode
        and not channel._buffer
        and not channel._busyReceiving
        and not channel._handlingRequest
    )


def dispatchWholeHead(channel, method, target, version):
    """
    Complete a request whose head C{channel} got in one piece, as Twisted's
    parser would at the end of its head: the request line is kept where
    C{allContentReceived} reads it, and bytes that come while the request is
    dispatched wait in the line buffer, parsed afterwards.
    """
    channel._command, channel._path, channel._version = method, target, version
    channel._busyReceiving = True
    try:
        channel.allHeadersReceived()
        channel.allContentReceived()
    finally:
        channel._busyReceiving = False
    if channel._buffer:
        http.HTTPChannel.dataReceived(channel, b"")


def requestLine(channel):
    """
    The request line of the request whose head C{channel} has just parsed
    (its body still to come).

    @return: C{(method, target, version)}.
    """
    return channel._command, channel._path, channel._version


# twisted.web's transfer decoders, for backend response bodies.

ChunkedDecoder = http._ChunkedTransferDecoder
IdentityDecoder = http._IdentityTransferDecoder
MalformedChunkedData = http._MalformedChunkedDataError


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
