"""
Flow control, measured: a gibibyte through the proxy to a slow reader, and
from a slow backend's point of view, leaves the proxy's memory flat.

proxyws runs as a twistd subprocess.  The backend and the client are raw
sockets in threads of the test process, so that nothing in the test
process runs Twisted and the only memory measured is the proxy's: its
resident set size, sampled from C{/proc} every 20 ms.  Each test prints its
RSS growth and wall time (run pytest with C{-s} to see them).
"""

import socket
import threading
import time

from twisted.trial.unittest import SynchronousTestCase

from .helpers import ThreadedServer, freePort, rss
from .test_twistd import proxyConfigText, startProxyProcess

MiB = 1024 * 1024
GiB = 1024 * MiB

# What the proxy's resident set may grow by, over its size after a warm-up
# request, while it relays a body of any size to or from a slow peer.
RSS_LIMIT = 64 * MiB

# The size of each send and receive of the test's peers.
PIECE = 256 * 1024

# How long a slow peer stops reading, after it has read PAUSE_AFTER bytes.
PAUSE = 2.0
PAUSE_AFTER = 1 * MiB

# Seconds a single socket operation may block before the test fails.
SOCKET_TIMEOUT = 60.0

ZEROS = bytes(PIECE)


def readHead(reader):
    """
    Read the head of an HTTP message from a buffered reader.

    @return: C{(first line, {lower-cased name: value})}, or L{None} at the
        end of the stream.
    """
    first = reader.readline(65536)
    if not first:
        return None
    headers = {}
    while True:
        line = reader.readline(65536)
        if line in (b"\r\n", b"\n", b""):
            return first.rstrip(b"\r\n"), headers
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()


def readExactly(reader, count, buffer, pauseAt=None):
    """
    Read C{count} bytes into C{buffer} (over and over) and discard them.

    @param pauseAt: the number of bytes after which to stop reading for
        L{PAUSE} seconds, or L{None}.
    @return: the number of bytes read, C{count} unless the stream ended.
    """
    view = memoryview(buffer)
    done = 0
    while done < count:
        if pauseAt is not None and done >= pauseAt:
            time.sleep(PAUSE)
            pauseAt = None
        wanted = min(len(view), count - done)
        if pauseAt is not None:
            wanted = min(wanted, pauseAt - done)
        got = reader.readinto(view[:wanted])
        if not got:
            break
        done += got
    return done


def readChunked(reader, buffer, pauseAt=None):
    """
    Decode a chunked body (RFC 9112 section 7.1) and discard it.

    @param pauseAt: as for L{readExactly}, counted in body bytes.
    @return: the number of body bytes.
    @raise ValueError: for a malformed body or one cut short.
    """
    total = 0
    while True:
        size = int(reader.readline(1024).split(b";")[0].strip(), 16)
        if size == 0:
            break
        pause = None if pauseAt is None or total + size <= pauseAt else max(pauseAt - total, 0)
        got = readExactly(reader, size, buffer, pause)
        if got != size or reader.read(2) != b"\r\n":
            raise ValueError("chunk of {} bytes cut short after {}".format(size, got))
        total += size
        if pause is not None:
            pauseAt = None
    while True:
        line = reader.readline(65536)
        if not line:
            raise ValueError("no end of trailer section")
        if line in (b"\r\n", b"\n"):
            return total


class RawBackend(ThreadedServer):
    """
    An HTTP/1.1 backend on a raw socket, one thread per connection, with
    keep-alive:
      - C{GET /<n>} answers with C{n} zero bytes, in L{PIECE} C{sendall}s;
      - C{POST} reads the body (with a length or chunked) and answers with
        its size in bytes as the body; on C{/up} it stops reading for
        L{PAUSE} seconds after L{PAUSE_AFTER} bytes.

    @ivar port: the port it listens on.
    @ivar sent: body bytes sent so far.
    @ivar received: body bytes received so far.
    @ivar errors: exceptions raised while serving.
    """

    socketTimeout = SOCKET_TIMEOUT

    def __init__(self):
        ThreadedServer.__init__(self)
        self.sent = 0
        self.received = 0

    def serve(self, connection):
        buffer = bytearray(PIECE)
        try:
            with connection.makefile("rb") as reader:
                while True:
                    head = readHead(reader)
                    if head is None:
                        return
                    self._answer(connection, reader, buffer, *head)
        except Exception as e:
            self.errors.append(e)
        finally:
            connection.close()

    def _answer(self, connection, reader, buffer, line, headers):
        method, target, _ = line.split(b" ")
        if method == b"GET":
            size = int(target[1:])
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (size,))
            while size:
                piece = ZEROS if size >= PIECE else ZEROS[:size]
                connection.sendall(piece)
                size -= len(piece)
                self.sent += len(piece)
            return
        pauseAt = PAUSE_AFTER if target == b"/up" else None
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            count = readChunked(reader, buffer, pauseAt)
        else:
            length = int(headers[b"content-length"])
            count = readExactly(reader, length, buffer, pauseAt)
            if count != length:
                raise ValueError("body cut short: {} of {}".format(count, length))
        self.received += count
        body = b"%d" % (count,)
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )


class RSSSampler:
    """
    Samples a process's resident set size every 20 ms in a thread.

    @ivar peak: the largest size seen, in bytes.
    """

    def __init__(self, pid):
        self._pid = pid
        self.peak = rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, rss(self._pid))
            except (OSError, RuntimeError):
                return

    def stop(self):
        """
        Stop sampling.

        @return: the peak size in bytes.
        """
        self._stop.set()
        self._thread.join(5)
        return self.peak


class Client:
    """
    A raw HTTP/1.1 client connection to the proxy.
    """

    def __init__(self, port):
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
        self._rest = b""

    def readHead(self):
        """
        Read a response head.

        @return: C{(status, {lower-cased name: value})}; what came after
            the head is kept for L{readBody}.
        """
        data = self._rest
        while b"\r\n\r\n" not in data:
            more = self.socket.recv(65536)
            if not more:
                raise AssertionError("connection closed in the head: {!r}".format(data))
            data += more
        head, _, self._rest = data.partition(b"\r\n\r\n")
        first, *lines = head.split(b"\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        return int(first.split(b" ")[1]), headers

    def readBody(self, length, pauseAt=None, paused=None):
        """
        Read and count up to C{length} body bytes, in L{PIECE} C{recv_into}
        calls into one buffer.

        @param pauseAt: stop reading for L{PAUSE} seconds once this many
            bytes are in, or L{None}.
        @param paused: called with the count at the end of the pause.
        @return: the number of bytes read before C{length} or the end of
            the stream.
        """
        count = len(self._rest)
        self._rest = b""
        buffer = bytearray(PIECE)
        view = memoryview(buffer)
        while count < length:
            if pauseAt is not None and count >= pauseAt:
                time.sleep(PAUSE)
                pauseAt = None
                if paused is not None:
                    paused(count)
            got = self.socket.recv_into(view, min(PIECE, length - count))
            if not got:
                break
            count += got
        return count

    def readAll(self, length):
        """
        Read exactly C{length} body bytes.

        @return: the bytes.
        """
        data, self._rest = self._rest, b""
        while len(data) < length:
            more = self.socket.recv(length - len(data))
            if not more:
                raise AssertionError("connection closed in the body: {!r}".format(data))
            data += more
        return data

    def close(self):
        """
        Close the connection.
        """
        self.socket.close()


class FlowControlTests(SynchronousTestCase):
    """
    A body far larger than the memory the proxy may use crosses it whole,
    with a peer that stops reading for a while, and the proxy's resident
    set stays within L{RSS_LIMIT} of its size after a warm-up request.
    """

    def setUp(self):
        """
        Start a L{RawBackend} and proxyws in front of it, and make a warm-up
        request of each kind.
        """
        self.backend = RawBackend()
        self.addCleanup(self.backend.close)
        self.port = freePort()
        config = proxyConfigText(
            self.port, self.backend.port, server='access_log = "{directory}/access.log"'
        )
        self.proxy = startProxyProcess(self, config)
        self.proxy.waitForPort(self.port)
        self.assertEqual(self.download(MiB), MiB)
        self.assertEqual(self.upload(MiB, b"/warm"), MiB)
        self.assertEqual(self.upload(MiB, b"/warm", chunked=True), MiB)

    def download(self, length, pauseAt=None):
        """
        C{GET /<length>} through the proxy.

        @return: the number of body bytes received.
        """
        client = Client(self.port)
        self.addCleanup(client.close)
        client.socket.sendall(b"GET /%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % (length,))
        status, headers = client.readHead()
        self.assertEqual((status, headers.get(b"content-length")), (200, b"%d" % (length,)))
        received = client.readBody(length, pauseAt, self._paused)
        client.close()
        return received

    def _paused(self, count):
        """
        Note how much the backend had sent when the client's pause ended,
        beyond what the client had read.
        """
        print(
            "\nafter the client's {:.0f} s pause: backend sent {:.1f} MiB more"
            " than the client read".format(PAUSE, (self.backend.sent - count) / MiB)
        )

    def upload(self, length, target, chunked=False):
        """
        C{POST} C{length} zero bytes to C{target} through the proxy.

        @param chunked: send the body chunked instead of with a length.
        @return: the byte count the backend answers with.
        """
        client = Client(self.port)
        self.addCleanup(client.close)
        framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % (length,)
        client.socket.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n\r\n" % (target, framing))
        chunk = b"%x\r\n%s\r\n" % (PIECE, ZEROS)
        left = length
        while left:
            size = min(PIECE, left)
            if not chunked:
                client.socket.sendall(ZEROS[:size])
            elif size == PIECE:
                client.socket.sendall(chunk)
            else:
                client.socket.sendall(b"%x\r\n%s\r\n" % (size, ZEROS[:size]))
            left -= size
        if chunked:
            client.socket.sendall(b"0\r\n\r\n")
        status, headers = client.readHead()
        self.assertEqual(status, 200)
        body = client.readAll(int(headers[b"content-length"]))
        client.close()
        return int(body)

    def measure(self, name, transfer):
        """
        Run C{transfer} while sampling the proxy's resident set, print the
        growth and the wall time, and check the growth.

        @return: what C{transfer} returned.
        """
        baseline = rss(self.proxy.pid)
        sampler = RSSSampler(self.proxy.pid)
        started = time.monotonic()
        try:
            result = transfer()
        finally:
            peak = sampler.stop()
        elapsed = time.monotonic() - started
        growth = peak - baseline
        print(
            "\n{}: proxy RSS baseline {:.1f} MiB, peak {:.1f} MiB, growth {:.1f} MiB;"
            " wall time {:.2f} s".format(name, baseline / MiB, peak / MiB, growth / MiB, elapsed)
        )
        self.assertEqual(self.backend.errors, [])
        self.assertLess(growth, RSS_LIMIT)
        return result

    def test_downloadToSlowReader(self):
        """
        1 GiB from the backend reaches a client that reads 1 MiB, stops
        reading for 2 seconds, then reads as fast as it can: every byte
        arrives, and the proxy pauses the backend instead of buffering.
        """
        received = self.measure(
            "1 GiB download, slow reader", lambda: self.download(GiB, pauseAt=PAUSE_AFTER)
        )
        self.assertEqual(received, GiB)

    def test_uploadToSlowBackend(self):
        """
        1 GiB sent with C{Content-Length} reaches a backend that reads 1 MiB,
        stops reading for 2 seconds, then reads the rest: it counts every
        byte, and the proxy pauses the client instead of buffering.
        """
        counted = self.measure("1 GiB upload, slow backend", lambda: self.upload(GiB, b"/up"))
        self.assertEqual(counted, GiB)

    def test_chunkedUploadToSlowBackend(self):
        """
        256 MiB sent chunked by the client reaches the same slow backend
        whole.
        """
        counted = self.measure(
            "256 MiB chunked upload, slow backend",
            lambda: self.upload(256 * MiB, b"/up", chunked=True),
        )
        self.assertEqual(counted, 256 * MiB)
