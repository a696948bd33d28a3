"""
Flow control of the websocket relay, measured: a gibibyte message each way,
in one frame and in fragments, and a backend that floods a client which
stops reading, leave the proxy's memory flat.

As in L{tests.test_flowcontrol}, proxyws runs as a twistd subprocess and the
backend and the client are raw sockets in threads of the test process, so
that the only memory measured is the proxy's: its resident set size, sampled
from C{/proc} every 20 ms from the moment the websocket is open.  Both peers
speak RFC 6455 themselves: they read a frame's payload in L{PIECE}s into one
buffer, check it and count it, so that neither holds a whole message.  Each
test prints its RSS growth and wall time (run pytest with C{-s} to see them).
"""

import base64
import os
import queue
import socket
import struct
import time

from twisted.trial.unittest import SynchronousTestCase

from .helpers import ThreadedServer, freePort, rss
from .test_flowcontrol import RSSSampler
from .test_twistd import proxyConfigText, startProxyProcess
from .wsbackends import BINARY, CLOSE, PING, PONG, acceptKey, closePayload, upgradeRequest

MiB = 1024 * 1024
GiB = 1024 * MiB

# What the proxy's resident set may grow by, over its size once the
# websocket is open, while it relays a message of any size or feeds a
# reader that has stopped.
RSS_LIMIT = 64 * MiB

# The size of each send and receive of the test's peers: a multiple of 4,
# so that every piece of a frame starts at the same place in the mask.
PIECE = 256 * 1024

# The frame size of a fragmented message, and the message size of a flood.
FRAGMENT = 1 * MiB

# How long the flooding backend sends, and how long the client first reads
# nothing of it.
FLOOD = 3.0
STALL = 2.0

# Seconds a single socket operation, or a wait for the backend, may block
# before the test fails.
SOCKET_TIMEOUT = 30.0

# RFC 6455 section 5.2: the opcode of every frame of a message after its
# first.
CONTINUATION = 0x0

ZEROS = bytes(PIECE)


def frameHead(opcode, length, fin=True, key=None):
    """
    The head of a websocket frame (RFC 6455 section 5.2).

    @param key: the 4-byte masking key, or L{None} for an unmasked frame.
    """
    first = (0x80 if fin else 0) | opcode
    bit = 0x80 if key else 0
    if length < 126:
        head = struct.pack("!BB", first, bit | length)
    elif length < 65536:
        head = struct.pack("!BBH", first, bit | 126, length)
    else:
        head = struct.pack("!BBQ", first, bit | 127, length)
    return head + (key or b"")


def maskedZeros(key):
    """
    What L{PIECE} zero bytes look like masked with C{key}, with 3 bytes more
    so that a piece starting anywhere in the mask is a slice of it.
    """
    return key * (PIECE // 4 + 1)


def cpuSeconds(pid):
    """
    The processor time a process has used so far, user and system.
    """
    with open("/proc/{}/stat".format(pid)) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Connection:
    """
    One end of a websocket on a blocking socket, in RFC 6455 terms: frame
    heads and small payloads are read whole, large payloads are counted
    piece by piece into one buffer.

    @ivar socket: the socket.
    """

    def __init__(self, sock, masks):
        """
        @param masks: whether this end masks its frames (a client does).
        """
        self.socket = sock
        self._masks = masks
        self._rest = b""
        self._buffer = bytearray(PIECE)

    def _recvExactly(self, length):
        while len(self._rest) < length:
            more = self.socket.recv(65536)
            if not more:
                raise AssertionError("connection closed; got {!r}".format(self._rest))
            self._rest += more
        data, self._rest = self._rest[:length], self._rest[length:]
        return data

    def readHead(self):
        """
        Read an HTTP message head; what came after it stays for the frames.

        @return: C{(first line, {lower-cased name: value})}.
        """
        while b"\r\n\r\n" not in self._rest:
            more = self.socket.recv(65536)
            if not more:
                raise AssertionError("connection closed in the head: {!r}".format(self._rest))
            self._rest += more
        head, _, self._rest = self._rest.partition(b"\r\n\r\n")
        first, *lines = head.split(b"\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        return first, headers

    def readFrameHead(self):
        """
        @return: C{(fin, opcode, payload length, masking key or None)}.
        """
        first, second = self._recvExactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._recvExactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._recvExactly(8))
        key = self._recvExactly(4) if second & 0x80 else None
        return bool(first & 0x80), first & 0x0F, length, key

    def countZeros(self, length, key):
        """
        Read a payload of C{length} bytes that should be zeros, checking
        each piece as it comes.

        @param key: the frame's masking key, or L{None}.
        @raise AssertionError: at the first piece that is not zeros, or if
            the connection ends first.
        """
        expected = maskedZeros(key) if key else ZEROS + b"\0\0\0"
        done = min(len(self._rest), length)
        if self._rest[:done] != expected[:done]:
            raise AssertionError("payload is not zeros at offset 0")
        self._rest = self._rest[done:]
        view = memoryview(self._buffer)
        while done < length:
            got = self.socket.recv_into(view, min(PIECE, length - done))
            if not got:
                raise AssertionError("connection closed after {} of {} bytes".format(done, length))
            start = done % 4
            piece = self._buffer if got == PIECE else self._buffer[:got]
            if piece != expected[start : start + got]:
                raise AssertionError("payload is not zeros after offset {}".format(done))
            done += got

    def readMessage(self):
        """
        Read one data message of zeros, answering pings meanwhile.

        @return: its frames as C{[(opcode, fin, payload length), ...]},
            ending with C{(CLOSE, True, (code, reason))} if a close frame
            came before the message ended.
        """
        frames = []
        while not frames or not frames[-1][1]:
            fin, opcode, length, key = self.readFrameHead()
            if opcode < CLOSE:
                self.countZeros(length, key)
                frames.append((opcode, fin, length))
                continue
            payload = self._unmasked(self._recvExactly(length), key)
            if opcode == CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                frames.append((CLOSE, True, (code, payload[2:])))
            elif opcode == PING:
                self.sendFrame(PONG, payload)
        return frames

    def _unmasked(self, payload, key):
        if not key:
            return payload
        return bytes(b ^ key[i % 4] for i, b in enumerate(payload))

    def sendFrame(self, opcode, payload):
        """
        Send a small frame.
        """
        key = os.urandom(4) if self._masks else None
        self.socket.sendall(frameHead(opcode, len(payload), True, key) + self._unmasked(payload, key))

    def sendZeros(self, opcode, length, fin=True):
        """
        Send one frame of C{length} zero bytes, in L{PIECE} C{sendall}s.
        """
        key = os.urandom(4) if self._masks else None
        piece = maskedZeros(key)[:PIECE] if key else ZEROS
        self.socket.sendall(frameHead(opcode, length, fin, key))
        while length:
            size = min(PIECE, length)
            self.socket.sendall(piece if size == PIECE else piece[:size])
            length -= size

    def sendMessage(self, length, fragment):
        """
        Send one binary message of C{length} zero bytes in frames of
        C{fragment} bytes.
        """
        opcode = BINARY
        while True:
            size = min(fragment, length)
            length -= size
            self.sendZeros(opcode, size, fin=not length)
            if not length:
                return
            opcode = CONTINUATION

    def closeHandshake(self, code=1000):
        """
        Send a close frame and read until the peer's.

        @return: the peer's C{(code, reason)}.
        """
        self.sendFrame(CLOSE, closePayload(code))
        while True:
            frames = self.readMessage()
            if frames[-1][0] == CLOSE:
                return frames[-1][2]

    def answerClose(self, code):
        """
        Answer the peer's close frame and wait for it to close the
        connection.

        @return: what came before the end of the stream.
        """
        self.sendFrame(CLOSE, closePayload(code))
        rest, self._rest = self._rest, b""
        while True:
            more = self.socket.recv(65536)
            if not more:
                return rest
            rest += more

    def close(self):
        """
        Close the socket.
        """
        self.socket.close()


class WebSocketBackend(ThreadedServer):
    """
    A websocket backend on a raw socket, one thread per connection, its
    behaviour chosen by the request path:
      - C{/count}: reads messages of zeros and puts each one's frames (see
        L{Connection.readMessage}) on L{messages}, until the close frame,
        which it answers;
      - C{/send/<length>/<fragment>}: sends one binary message of
        C{length} zero bytes in frames of C{fragment} bytes, then answers
        the client's close frame;
      - C{/flood/<seconds>}: sends messages of L{FRAGMENT} zero bytes, one
        frame each, as fast as it can for C{seconds}, then closes with 1000
        and the number of messages as the reason.

    @ivar port: the port it listens on.
    @ivar sent: payload bytes sent so far.
    @ivar messages: a L{queue.Queue} of what C{/count} read.
    @ivar errors: exceptions raised while serving.
    """

    socketTimeout = SOCKET_TIMEOUT

    def __init__(self):
        ThreadedServer.__init__(self)
        self.sent = 0
        self.messages = queue.Queue()

    def serve(self, sock):
        connection = Connection(sock, masks=False)
        try:
            first, headers = connection.readHead()
            sock.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                % (acceptKey(headers[b"sec-websocket-key"]),)
            )
            command, *arguments = first.split(b" ")[1].strip(b"/").split(b"/")
            getattr(self, "_" + command.decode("ascii"))(connection, *map(int, arguments))
        except Exception as e:
            self.errors.append(e)
        finally:
            sock.close()

    def _count(self, connection):
        while True:
            frames = connection.readMessage()
            if frames[-1][0] != CLOSE or len(frames) > 1:
                self.messages.put(frames)
            if frames[-1][0] == CLOSE:
                connection.sendFrame(CLOSE, closePayload(frames[-1][2][0]))
                return

    def _send(self, connection, length, fragment):
        connection.sendMessage(length, fragment)
        self.sent += length
        self._count(connection)

    def _flood(self, connection, seconds):
        frame = frameHead(BINARY, FRAGMENT) + bytes(FRAGMENT)
        count = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            connection.socket.sendall(frame)
            self.sent += FRAGMENT
            count += 1
        connection.sendFrame(CLOSE, closePayload(1000, b"%d" % (count,)))
        while connection.readMessage()[-1][0] != CLOSE:
            pass


def binaryMessage(length, fragment):
    """
    What L{summary} gives for one binary message of C{length} bytes sent in
    frames of C{fragment} bytes.
    """
    return (BINARY, True, True, length, [fragment] * (length // fragment))


def summary(frames):
    """
    Sum up the frames of a message, as L{Connection.readMessage} returns
    them, in what relaying it frame by frame must keep.  (An intermediary
    may split and join frames, RFC 6455 section 5.4; a relay that neither
    assembles nor re-cuts payload keeps the sizes of the frames that carry
    some.)

    @return: C{(opcode of the first frame, whether all others are
        continuations, whether FIN is on the last frame only, payload
        length, lengths of the frames with payload)}; or C{frames} as they
        are if a close frame cut the message short.
    """
    if frames[-1][0] == CLOSE:
        return frames
    return (
        frames[0][0],
        all(opcode == CONTINUATION for opcode, _, _ in frames[1:]),
        [fin for _, fin, _ in frames] == [False] * (len(frames) - 1) + [True],
        sum(length for _, _, length in frames),
        [length for _, _, length in frames if length],
    )


class WebSocketFlowControlTests(SynchronousTestCase):
    """
    A message far larger than the memory the proxy may use crosses it whole
    and unchanged, frame for frame, each way; a client that stops reading
    pauses the backend.  Meanwhile the proxy's resident set stays within
    L{RSS_LIMIT} of its size once the websocket is open.
    """

    def setUp(self):
        """
        Start a L{WebSocketBackend} and proxyws in front of it, and relay a
        warm-up message each way.
        """
        self.backend = WebSocketBackend()
        self.addCleanup(self.backend.close)
        self.port = freePort()
        config = proxyConfigText(
            self.port, self.backend.port, server='access_log = "{directory}/access.log"'
        )
        self.proxy = startProxyProcess(self, config)
        self.proxy.waitForPort(self.port)
        client = self.connect(b"/count")
        client.sendMessage(MiB, PIECE)
        self.assertEqual(summary(self.nextMessage()), binaryMessage(MiB, PIECE))
        self.assertEqual(client.closeHandshake(), (1000, b""))
        client = self.connect(b"/send/%d/%d" % (MiB, PIECE))
        self.assertEqual(summary(client.readMessage()), binaryMessage(MiB, PIECE))
        self.assertEqual(client.closeHandshake(), (1000, b""))

    def connect(self, path):
        """
        Open a websocket to C{path} through the proxy.

        @return: the client's L{Connection}, closed when the test ends.
        """
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=SOCKET_TIMEOUT)
        self.addCleanup(sock.close)
        key = base64.b64encode(os.urandom(16))
        sock.sendall(upgradeRequest(path, b"127.0.0.1:%d" % (self.port,), key=key))
        connection = Connection(sock, masks=True)
        first, headers = connection.readHead()
        self.assertEqual(
            (first.split(b" ")[1], headers.get(b"sec-websocket-accept")), (b"101", acceptKey(key))
        )
        return connection

    def nextMessage(self):
        """
        @return: the next message the backend counted.
        """
        try:
            return self.backend.messages.get(timeout=SOCKET_TIMEOUT)
        except queue.Empty:
            self.fail(
                "no message at the backend within {}s; backend errors {!r}; proxy output:\n{}".format(
                    SOCKET_TIMEOUT, self.backend.errors, self.proxy.output()
                )
            )

    def measure(self, name, transfer):
        """
        Run C{transfer} while sampling the proxy's resident set, print the
        growth and the wall time, and check the growth.

        @return: what C{transfer} returned.
        """
        baseline = rss(self.proxy.pid)
        cpu = cpuSeconds(self.proxy.pid)
        sampler = RSSSampler(self.proxy.pid)
        started = time.monotonic()
        try:
            result = transfer()
        finally:
            peak = sampler.stop()
        elapsed = time.monotonic() - started
        cpu = cpuSeconds(self.proxy.pid) - cpu
        growth = peak - baseline
        print(
            "\n{}: proxy RSS baseline {:.1f} MiB, peak {:.1f} MiB, growth {:.1f} MiB;"
            " wall time {:.2f} s, proxy CPU {:.2f} s".format(
                name, baseline / MiB, peak / MiB, growth / MiB, elapsed, cpu
            )
        )
        self.assertEqual(self.backend.errors, [])
        # The process measured is the one that relayed (no worker did).
        self.assertGreater(cpu, 0)
        self.assertLess(growth, RSS_LIMIT)
        return result

    def upload(self, name, fragment):
        """
        Send a 1 GiB binary message in frames of C{fragment} bytes to a
        backend that counts it, and check that it arrives as sent.
        """
        client = self.connect(b"/count")

        def transfer():
            client.sendMessage(GiB, fragment)
            return self.nextMessage()

        frames = self.measure(name, transfer)
        print("the backend read {} frames".format(len(frames)))
        self.assertEqual(summary(frames), binaryMessage(GiB, fragment))
        self.assertEqual(client.closeHandshake(), (1000, b""))

    def download(self, name, fragment):
        """
        Have the backend send a 1 GiB binary message in frames of
        C{fragment} bytes to a client that counts it, and check that it
        arrives as sent.
        """
        client = self.connect(b"/send/%d/%d" % (GiB, fragment))
        frames = self.measure(name, client.readMessage)
        print("the client read {} frames".format(len(frames)))
        self.assertEqual(summary(frames), binaryMessage(GiB, fragment))
        self.assertEqual(client.closeHandshake(), (1000, b""))

    def test_uploadOneFrame(self):
        """
        A 1 GiB message in one frame from the client reaches the backend as
        that one frame, whole.
        """
        self.upload("1 GiB to the backend in one frame", GiB)

    def test_uploadFragmented(self):
        """
        A 1 GiB message in 1 MiB fragments from the client reaches the
        backend as one binary message of the same fragments, FIN on the last.
        """
        self.upload("1 GiB to the backend in 1 MiB frames", FRAGMENT)

    def test_downloadOneFrame(self):
        """
        A 1 GiB message in one frame from the backend reaches the client as
        that one frame, whole.
        """
        self.download("1 GiB to the client in one frame", GiB)

    def test_downloadFragmented(self):
        """
        A 1 GiB message in 1 MiB fragments from the backend reaches the
        client as one binary message of the same fragments, FIN on the last.
        """
        self.download("1 GiB to the client in 1 MiB frames", FRAGMENT)

    def test_floodToStalledReader(self):
        """
        A backend sends 1 MiB messages as fast as it can for L{FLOOD}
        seconds to a client that reads nothing for the first L{STALL}
        seconds and then reads everything: every message arrives, then the
        backend's close, and the proxy pauses the backend instead of
        buffering what the client does not read.
        """
        before = self.backend.sent
        client = self.connect(b"/flood/%d" % (FLOOD,))

        def transfer():
            time.sleep(STALL)
            print(
                "\nafter the client's {:.0f} s stall: backend sent {:.1f} MiB,"
                " client read none".format(STALL, (self.backend.sent - before) / MiB)
            )
            messages = []
            while True:
                frames = client.readMessage()
                if frames[-1][0] == CLOSE:
                    return messages, frames[-1][2]
                messages.append(frames)

        messages, (code, reason) = self.measure("1 MiB messages to a stalled client", transfer)
        print("flood: {} messages of 1 MiB".format(len(messages)))
        self.assertEqual((code, len(messages)), (1000, int(reason)))
        self.assertEqual(
            [summary(frames) for frames in messages],
            [binaryMessage(FRAGMENT, FRAGMENT)] * len(messages),
        )
        self.assertEqual(self.backend.sent - before, len(messages) * FRAGMENT)
        self.assertEqual(client.answerClose(1000), b"")
