"""
How much the websocket relay reads from a connection at a time.

A connection is read the route's C{ws_buffer_size} bytes at a time.  A peer
sending a large message fills every read, and each read costs a turn of
the event loop and a send to the other peer: while reads come back full,
more is waiting, and the read size doubles, up to L{READ_LIMIT}; each read
shorter than C{ws_buffer_size} (a small message, the end of a large one)
halves it again, down to C{ws_buffer_size}.  Small messages keep small
reads: CPython allocates the whole read size for every C{recv}, and above
128 KiB the C library may map fresh pages for it.

The read size is Twisted's C{bufferSize} of the TCP transport, which is
also how much may wait to be written to that connection before its peer's
reading pauses: the two grow together, and stay bounded by L{READ_LIMIT}
(or by C{ws_buffer_size} when that is larger).  Over TLS the relay gets the
decrypted bytes in pieces of at most 32 KiB (Twisted's TLS protocol), so
that reads grow there only when C{ws_buffer_size} is smaller than that.
"""

import sys

# The read size that full reads grow to.  Measured on the 1 MiB message
# bench row (bench/wsbig.py): reads of 512 KiB and 1 MiB relayed about as
# fast, 2 and 4 MiB slower (each large read maps and faults in fresh pages).
READ_LIMIT = 1024 * 1024

# The read size of a leg whose transport has none to set: no read is full.
UNSET = sys.maxsize


def readSizeAfter(current, got, base):
    """
    The read size of a connection after a read.

    @param current: the read size the read was made with.
    @param got: the bytes it returned.
    @param base: the route's C{ws_buffer_size}, the smallest read size.
    @return: double C{current} after a full read, up to L{READ_LIMIT} (never
        less than C{current}); half of it after a read shorter than C{base},
        down to C{base}; else C{current}.
    """
    if got >= current:
        return max(current, min(2 * current, READ_LIMIT))
    if got < base:
        return max(current // 2, base)
    return current


def startReading(leg, size, growing=True):
    """
    Read C{leg}'s connection C{size} bytes at a time: set the C{bufferSize}
    of its TCP transport (below a TLS one, if any), and, when C{growing},
    remember that transport as the leg's C{reader}, whose read size
    L{resize} changes.

    @param leg: a L{proxyws.wsrelay.Leg}; its C{readSize} stays L{UNSET}
        (no read is full) when not C{growing} or when no transport below it
        has a C{bufferSize}.
    """
    transport = leg.transport
    while transport is not None and not hasattr(transport, "bufferSize"):
        transport = getattr(transport, "transport", None)
    if transport is not None:
        transport.bufferSize = size
        if growing:
            leg.reader, leg.readSize = transport, size


def resize(leg, got, base):
    """
    A read of C{got} bytes from C{leg}'s connection may change its read
    size (L{readSizeAfter}).
    """
    leg.readSize = leg.reader.bufferSize = readSizeAfter(leg.readSize, got, base)
    leg.grown = leg.readSize > base
