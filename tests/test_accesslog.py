"""
Tests for L{proxyws.accesslog}: Apache combined lines, byte for byte, and the
files they are appended to.
"""

import os
import shutil
import tempfile
import time

from zope.interface.verify import verifyObject

from twisted.logger import Logger
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from proxyws import accesslog
from proxyws.accesslog import (
    AccessLog, IAccessLog, MemoryAccessLog, escapeLogItem, formatCombined,
    formatTime, requestLine)

# 2000-10-10 20:55:36 UTC: the instant of the example in Apache's manual.
APACHE_EXAMPLE = 971211336.0
# 2021-01-15 12:00:00 UTC: winter in the northern hemisphere.
WINTER = 1610712000.25


def useTimezone(case, name):
    """
    Switch the process to a time zone for the rest of a test, and empty the
    time cache so that no text from another zone is served.

    @param case: The running test; its cleanup restores the time zone.
    @type case: L{SynchronousTestCase}
    @param name: A zoneinfo name, such as C{"Asia/Kolkata"}.
    @type name: L{str}
    """
    old = os.environ.get("TZ")

    def restore():
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()

    case.addCleanup(restore)
    os.environ["TZ"] = name
    time.tzset()
    case.patch(accesslog, "_timeCache", (None, b""))


class FormatTimeTests(SynchronousTestCase):
    """
    Tests for L{formatTime}.
    """

    def test_apacheExample(self):
        """
        The instant of Apache's documented example, in Los Angeles summer
        time, is written exactly as the manual shows it.
        """
        useTimezone(self, "America/Los_Angeles")
        self.assertEqual(formatTime(APACHE_EXAMPLE),
                         b"[10/Oct/2000:13:55:36 -0700]")

    def test_negativeOffsetWinter(self):
        """
        In Los Angeles in winter the offset is C{-0800}; day, hour, minute
        and second are zero-padded.
        """
        useTimezone(self, "America/Los_Angeles")
        self.assertEqual(formatTime(1610010245.0),
                         b"[07/Jan/2021:01:04:05 -0800]")

    def test_halfHourOffset(self):
        """
        A zone with a half-hour offset writes its minutes: C{+0530}.
        """
        useTimezone(self, "Asia/Kolkata")
        self.assertEqual(formatTime(WINTER), b"[15/Jan/2021:17:30:00 +0530]")

    def test_utc(self):
        """
        UTC is written C{+0000}, with a plus sign.
        """
        useTimezone(self, "UTC")
        self.assertEqual(formatTime(WINTER), b"[15/Jan/2021:12:00:00 +0000]")

    def test_englishMonths(self):
        """
        Every month is written with its English three-letter abbreviation.
        """
        useTimezone(self, "UTC")
        months = [formatTime(time.mktime((2021, m, 1, 0, 0, 0, 0, 0, 0)))[4:7]
                  for m in range(1, 13)]
        self.assertEqual(b" ".join(months),
                         b"Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec")

    def test_cachedPerSecond(self):
        """
        Two calls within one whole second convert the time once; the next
        second is converted afresh.
        """
        useTimezone(self, "UTC")
        calls = []
        real = time.localtime

        def localtime(when):
            calls.append(when)
            return real(when)

        self.patch(time, "localtime", localtime)
        first = formatTime(WINTER)
        self.assertEqual(formatTime(WINTER + 0.7), first)
        self.assertEqual(len(calls), 1)
        self.assertEqual(formatTime(WINTER + 1.0),
                         b"[15/Jan/2021:12:00:01 +0000]")
        self.assertEqual(len(calls), 2)


class EscapeLogItemTests(SynchronousTestCase):
    """
    Tests for L{escapeLogItem}, which follows httpd's C{ap_escape_logitem}.
    """

    def test_table(self):
        """
        Each byte is escaped as httpd escapes it: named escapes for C{\\b \\n
        \\r \\t \\v}, backslash before C{"} and C{\\}, lowercase C{\\xhh}
        for other controls, DEL and the high half, and nothing for the
        printable bytes C{0x20} to C{0x7e}.
        """
        table = [
            (b"plain /path?q=1&r=%20", b"plain /path?q=1&r=%20"),
            (b"\x08\n\r\t\x0b", b"\\b\\n\\r\\t\\v"),
            (b'"', b'\\"'),
            (b"\\", b"\\\\"),
            (b"\x00\x01\x1b\x1f", b"\\x00\\x01\\x1b\\x1f"),
            (b"\x0c", b"\\x0c"),
            (b" ~", b" ~"),
            (b"\x7f\x80\xab\xff", b"\\x7f\\x80\\xab\\xff"),
            (b"caf\xc3\xa9", b"caf\\xc3\\xa9"),
        ]
        self.assertEqual([escapeLogItem(raw) for raw, _ in table],
                         [escaped for _, escaped in table])

    def test_allPrintableUnchanged(self):
        """
        Every printable ASCII byte but C{"} and C{\\} is kept as it is.
        """
        printable = bytes(b for b in range(0x20, 0x7f) if b not in b'"\\')
        self.assertEqual(escapeLogItem(printable), printable)


class RequestLineTests(SynchronousTestCase):
    """
    Tests for L{requestLine}.
    """

    def test_joined(self):
        """
        Method, target and protocol are joined by single spaces, the query
        string kept.
        """
        self.assertEqual(requestLine(b"GET", b"/a?b=1", b"HTTP/1.1"),
                         b"GET /a?b=1 HTTP/1.1")


class FormatCombinedTests(SynchronousTestCase):
    """
    Tests for L{formatCombined}, pinned against complete lines.
    """

    def setUp(self):
        """
        Log in Los Angeles time, the zone of Apache's example.
        """
        useTimezone(self, "America/Los_Angeles")

    def test_apacheExample(self):
        """
        The combined-format example from Apache's manual comes out byte for
        byte.
        """
        line = formatCombined(
            "127.0.0.1", None, b"frank", APACHE_EXAMPLE,
            b"GET /apache_pb.gif HTTP/1.0", 200, 2326,
            b"http://www.example.com/start.html",
            b"Mozilla/4.08 [en] (Win98; I ;Nav)")
        self.assertEqual(
            line,
            b'127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] '
            b'"GET /apache_pb.gif HTTP/1.0" 200 2326 '
            b'"http://www.example.com/start.html" '
            b'"Mozilla/4.08 [en] (Win98; I ;Nav)"\n')

    def test_notFoundEmpty(self):
        """
        A response without a body has size C{-}; missing referer and user
        agent are C{"-"}, quotes kept.
        """
        line = formatCombined(
            "10.1.2.3", None, None, WINTER, b"GET /missing HTTP/1.1",
            404, 0, None, None)
        self.assertEqual(
            line,
            b'10.1.2.3 - - [15/Jan/2021:04:00:00 -0800] '
            b'"GET /missing HTTP/1.1" 404 - "-" "-"\n')

    def test_escapedFields(self):
        """
        Quote, backslash, control and non-ASCII bytes in the request line,
        user, referer and user agent are escaped, keeping one line.
        """
        line = formatCombined(
            "192.0.2.7", b"id\x01", b'bo"b', WINTER,
            b'GET /a"b\\c\x01d\xe9\n HTTP/1.1', 400, 11,
            b"http://x/\t", b"UA\\\x7f")
        self.assertEqual(
            line,
            b'192.0.2.7 id\\x01 bo\\"b [15/Jan/2021:04:00:00 -0800] '
            b'"GET /a\\"b\\\\c\\x01d\\xe9\\n HTTP/1.1" 400 11 '
            b'"http://x/\\t" "UA\\\\\\x7f"\n')
        self.assertEqual(line.count(b"\n"), 1)

    def test_escapedWithoutUser(self):
        """
        A line with neither logname nor user (as the proxy writes them) is
        escaped field by field too: each field needing an escape gets it,
        the others are written as they are, and an empty referer is C{""}.
        """
        prefix = b' - - [15/Jan/2021:04:00:00 -0800] "'
        cases = [
            (("192.0.2.7", b'GET /a"b HTTP/1.1', b"r", b"u"),
             b'192.0.2.7' + prefix + b'GET /a\\"b HTTP/1.1" 200 5 "r" "u"\n'),
            (("192.0.2.7", b"GET / HTTP/1.1", b"http://x/\t", None),
             b'192.0.2.7' + prefix + b'GET / HTTP/1.1" 200 5 "http://x/\\t" "-"\n'),
            (("192.0.2.7", b"GET / HTTP/1.1", None, b"UA\\\x7f"),
             b'192.0.2.7' + prefix + b'GET / HTTP/1.1" 200 5 "-" "UA\\\\\\x7f"\n'),
            (("h\u00e9", b"GET / HTTP/1.1", b"", b"\xe9"),
             b'h\\\\xe9' + prefix + b'GET / HTTP/1.1" 200 5 "" "\\xe9"\n'),
            (("192.0.2.7", b"GET / HTTP/1.1", b"", b"-"),
             b'192.0.2.7' + prefix + b'GET / HTTP/1.1" 200 5 "" "-"\n'),
        ]
        for (host, request, referer, agent), expected in cases:
            line = formatCombined(host, None, None, WINTER, request, 200, 5, referer, agent)
            self.assertEqual(line, expected, (host, request, referer, agent))

    def test_ipv6Unquoted(self):
        """
        An IPv6 client address is written bare, as Apache's C{%h}, not
        quoted as Twisted's C{combinedLogFormatter} writes it.
        """
        line = formatCombined(
            "2001:db8::1", None, None, WINTER, b"HEAD / HTTP/1.1",
            200, 0, None, b"curl/8.0")
        self.assertEqual(
            line,
            b'2001:db8::1 - - [15/Jan/2021:04:00:00 -0800] '
            b'"HEAD / HTTP/1.1" 200 - "-" "curl/8.0"\n')

    def test_emptyUser(self):
        """
        An empty user name is written C{""}, as Apache writes it, and an
        empty referer as C{""} too.
        """
        line = formatCombined(
            "10.0.0.1", None, b"", WINTER, b"GET / HTTP/1.1", 401, 5,
            b"", None)
        self.assertEqual(
            line,
            b'10.0.0.1 - "" [15/Jan/2021:04:00:00 -0800] '
            b'"GET / HTTP/1.1" 401 5 "" "-"\n')


class AccessLogFileTests(SynchronousTestCase):
    """
    Tests for L{AccessLog} on a file.
    """

    def setUp(self):
        """
        Pick a fresh path in a fresh directory, removed in cleanup.

        Not C{mktemp}: under pytest it writes into the working tree.
        """
        directory = FilePath(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, directory.path)
        self.path = directory.child("access.log")

    def test_interface(self):
        """
        L{AccessLog} provides L{IAccessLog}.
        """
        log = AccessLog.open(self.path.path)
        self.addCleanup(log.close)
        self.assertTrue(verifyObject(IAccessLog, log))

    def test_appendsLines(self):
        """
        Lines are appended after what the file already holds, in order.
        """
        self.path.setContent(b"old\n")
        log = AccessLog.open(self.path.path)
        log.write(b"one\n")
        log.write(b"two\n")
        log.close()
        self.assertEqual(self.path.getContent(), b"old\none\ntwo\n")

    def test_createdMode(self):
        """
        A new log file is created with mode C{0644} (under umask 022).
        """
        oldUmask = os.umask(0o022)
        self.addCleanup(os.umask, oldUmask)
        AccessLog.open(self.path.path).close()
        self.assertEqual(self.path.getPermissions().shorthand(), "rw-r--r--")

    def test_openFailure(self):
        """
        A path that cannot be opened raises L{OSError} to the caller.
        """
        missing = self.path.sibling("nowhere").child("access.log")
        self.assertRaises(OSError, AccessLog.open, missing.path)

    def test_reopenAfterRename(self):
        """
        After the file is renamed away, L{AccessLog.reopen} sends further
        lines to a new file at the original path.
        """
        log = AccessLog.open(self.path.path)
        self.addCleanup(log.close)
        log.write(b"before\n")
        rotated = self.path.sibling("access.log.1")
        self.path.moveTo(rotated)
        log.reopen()
        log.write(b"after\n")
        self.assertEqual(rotated.getContent(), b"before\n")
        self.assertEqual(self.path.getContent(), b"after\n")

    def test_oneWritePerLine(self):
        """
        Each line is one C{os.write}, and a short write to a file is not
        followed by another that could land after another process's line.
        """
        log = AccessLog.open(self.path.path)
        self.addCleanup(log.close)
        calls = []

        def short(fd, data):
            calls.append(data)
            return 3

        self.patch(os, "write", short)
        log.write(b"0123456789\n")
        self.assertEqual(calls, [b"0123456789\n"])

    def test_close(self):
        """
        L{AccessLog.close} closes the file's descriptor.
        """
        log = AccessLog.open(self.path.path)
        log.close()
        self.assertRaises(OSError, os.fstat, log.fd)

    def test_writeFailureLogged(self):
        """
        A failed write is reported through the operational log, naming the
        path, and not raised to the request being logged.
        """
        log = AccessLog.open(self.path.path)
        os.close(log.fd)
        events = []
        log._log = Logger(observer=events.append)
        log.write(b"lost\n")
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["path"], self.path.path)
        self.assertIsInstance(events[0]["error"], OSError)


class AccessLogStdoutTests(SynchronousTestCase):
    """
    Tests for L{AccessLog} on standard output, with descriptor 1 pointed at
    a pipe for the duration of each test.
    """

    def setUp(self):
        """
        Point descriptor 1 at a pipe; restore it in cleanup.
        """
        saved = os.dup(1)
        self.readEnd, writeEnd = os.pipe()

        def restore():
            os.dup2(saved, 1)
            os.close(saved)
            os.close(self.readEnd)

        self.addCleanup(restore)
        os.dup2(writeEnd, 1)
        os.close(writeEnd)
        # A test whose line never arrives fails instead of hanging.
        os.set_blocking(self.readEnd, False)

    def test_writesToStdout(self):
        """
        C{"-"} writes lines to descriptor 1.
        """
        log = AccessLog.open("-")
        log.write(b"line\n")
        self.assertEqual(os.read(self.readEnd, 100), b"line\n")

    def test_shortWritesCompleted(self):
        """
        On standard output a short write is followed by writes of the rest.
        """
        log = AccessLog.open("-")
        real = os.write

        def short(fd, data):
            return real(fd, data[:4])

        self.patch(os, "write", short)
        log.write(b"0123456789\n")
        self.assertEqual(os.read(self.readEnd, 100), b"0123456789\n")

    def test_closeAndReopenLeaveStdout(self):
        """
        L{AccessLog.reopen} and L{AccessLog.close} leave descriptor 1 open
        and in place.
        """
        log = AccessLog.open("-")
        log.reopen()
        log.close()
        os.write(1, b"still\n")
        self.assertEqual(os.read(self.readEnd, 100), b"still\n")


class MemoryAccessLogTests(SynchronousTestCase):
    """
    Tests for L{MemoryAccessLog}.
    """

    def test_interface(self):
        """
        L{MemoryAccessLog} provides L{IAccessLog}.
        """
        self.assertTrue(verifyObject(IAccessLog, MemoryAccessLog()))

    def test_records(self):
        """
        Lines are kept in order; reopens are counted and closing is noted.
        """
        log = MemoryAccessLog()
        log.write(b"a\n")
        log.write(b"b\n")
        log.reopen()
        log.close()
        self.assertEqual((log.lines, log.reopened, log.closed),
                         ([b"a\n", b"b\n"], 1, True))
