"""
Writing to a TCP transport without waiting for the event loop.

Twisted's C{transport.write} queues the bytes and asks the reactor to say
when the socket is writable: two more epoll calls and one more turn of the
event loop for every write.  On the proxy's hot paths the socket almost
always has room, so L{writeNow} sends at once and queues only what the
socket does not take.
"""

from twisted.internet import tcp

# The transports written to directly; any other (TLS, wrappers) is written
# to as usual.
_TCP = (tcp.Server, tcp.Client)


def writeNow(transport, data):
    """
    Write C{data} to C{transport}, at once when nothing is queued on it.

    (This reads the queue attributes of Twisted's C{FileDescriptor}.)
    """
    if (
        transport.__class__ in _TCP
        and not transport._tempDataBuffer
        and transport.offset == len(transport.dataBuffer)
        and transport.connected
        and not transport.disconnecting
    ):
        try:
            sent = transport.socket.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            sent = 0  # the reactor finds out and reports it
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
