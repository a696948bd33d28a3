# -*- test-case-name: tests.test_accesslog -*-
"""
Access log lines in Apache's combined format, and the files they go to.

The line format, field by field (Apache C{LogFormat} directives)::

    %h                 client address, not quoted
    %l                 remote logname (identd), "-" when unknown
    %u                 authenticated user, "-" when none
    %t                 [10/Oct/2000:13:55:36 -0700], local time
    "%r"               request line as received, quoted
    %>s                final status
    %b                 body size in bytes, "-" when zero
    "%{Referer}i"      Referer header, quoted, "-" when absent
    "%{User-agent}i"   User-Agent header, quoted, "-" when absent

Every field taken from the client goes through L{escapeLogItem}, which does
what httpd's C{ap_escape_logitem} does, so one request is always one line and
a quote inside a field can never end it early.

Twisted's C{combinedLogFormatter} is not used: it quotes C{%h}.
"""

import os
import re
import time

from zope.interface import implementer

from .interfaces import IAccessLog
from .logs import ProxyLogger

# Apache writes month names from a fixed English table (apr_month_snames),
# never through the C locale.
MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun",
          b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")

# The two-character escapes ap_escape_logitem uses; every other byte it
# escapes becomes \xhh in lowercase hex (httpd's c2x_table is lowercase).
NAMED_ESCAPES = {
    0x08: b"\\b", 0x0A: b"\\n", 0x0D: b"\\r", 0x09: b"\\t", 0x0B: b"\\v",
    0x22: b'\\"', 0x5C: b"\\\\",
}

# Bytes escaped: controls, DEL and the high half (not apr_isprint), the
# quote that delimits fields and the backslash that starts an escape.
# httpd leaves NUL alone only because a C string cannot hold one; it is
# escaped here so that no NUL reaches the file.
_MUST_ESCAPE = re.compile(b'[\x00-\x1f"\\\\\x7f-\xff]')

_ESCAPES = tuple(
    NAMED_ESCAPES.get(byte, b"\\x%02x" % (byte,)) for byte in range(256))

# Combined format; %h is deliberately unquoted.
_COMBINED = b'%s %s %s %s "%s" %d %s "%s" "%s"\n'

# The one-entry cache of formatTime: (whole second, formatted text).
_timeCache = (None, b"")


def _escapeMatch(match):
    """
    Return the escape of the one byte C{match} (of C{_MUST_ESCAPE}) found.
    """
    return _ESCAPES[match.group()[0]]


def escapeLogItem(item):
    """
    Escape one log field as httpd's C{ap_escape_logitem} does.

    @param item: The raw field.
    @type item: L{bytes}

    @return: C{item} with C{"} and C{\\} backslash-escaped, C{\\b \\n \\r
        \\t \\v} written as those escapes, and other bytes below 0x20 or
        from 0x7f up written as C{\\xhh}.
    @rtype: L{bytes}
    """
    if _MUST_ESCAPE.search(item) is None:
        return item
    return _MUST_ESCAPE.sub(_escapeMatch, item)


def _optional(item):
    """
    Escape C{item}, a field that may be missing: L{None} is C{b"-"}.
    """
    if item is None:
        return b"-"
    return escapeLogItem(item)


def formatTime(when):
    """
    Format a time as Apache's C{%t}, in local time with a numeric offset.

    The result is cached for the current whole second: every logged request
    calls this.

    @param when: Seconds since the epoch.
    @type when: L{float}

    @return: For example C{b"[10/Oct/2000:13:55:36 -0700]"}.
    @rtype: L{bytes}
    """
    global _timeCache
    second = int(when)
    cachedSecond, cachedText = _timeCache
    if second == cachedSecond:
        return cachedText
    local = time.localtime(second)
    offset = local.tm_gmtoff
    sign = b"-" if offset < 0 else b"+"
    offset = abs(offset)
    text = b"[%02d/%s/%d:%02d:%02d:%02d %s%02d%02d]" % (
        local.tm_mday, MONTHS[local.tm_mon - 1], local.tm_year,
        local.tm_hour, local.tm_min, local.tm_sec,
        sign, offset // 3600, (offset % 3600) // 60)
    _timeCache = (second, text)
    return text


def requestLine(method, uri, clientproto):
    """
    Rebuild the request line Apache logs as C{%r} from its L{bytes} parts.

    @param method: The request method, e.g. C{b"GET"}.
    @param uri: The request target as received, query string included.
    @param clientproto: The protocol version, e.g. C{b"HTTP/1.1"}.

    @return: The three parts joined by single spaces.
    @rtype: L{bytes}
    """
    return b" ".join((method, uri, clientproto))


def formatCombined(host, ident, user, when, requestLine, status, size,
                   referer, userAgent):
    """
    Format one access log line in Apache's combined format.

    Every parameter that may be L{None} is written C{-} (C{"-"} in quotes)
    when it is; all L{bytes} are escaped with L{escapeLogItem}.

    @param host: The client address, L{str}, written unquoted.
    @param ident: The identd logname, L{bytes} or L{None}.
    @param user: The authenticated user, L{bytes} or L{None}; an empty user
        is written C{""}, as Apache does.
    @param when: When the request arrived, L{float} seconds since the epoch.
    @param requestLine: The request line as received, L{bytes}; see
        L{proxyws.accesslog.requestLine}.
    @param status: The response status code, L{int}.
    @param size: The number of body bytes sent, L{int}; zero is written C{-}.
    @param referer: The Referer header, L{bytes} or L{None}.
    @param userAgent: The User-Agent header, L{bytes} or L{None}.

    @return: One line, ending in C{b"\\n"}.
    @rtype: L{bytes}
    """
    host = host.encode("ascii", "backslashreplace")
    if ident is None and user is None:
        # The common line, in one piece when none of its fields needs an
        # escape: one search over them all rather than one per field.
        referer = b"-" if referer is None else referer
        userAgent = b"-" if userAgent is None else userAgent
        if _MUST_ESCAPE.search(b" ".join((host, requestLine, referer, userAgent))) is None:
            return _COMBINED % (
                host,
                b"-",
                b"-",
                formatTime(when),
                requestLine,
                status,
                b"%d" % (size,) if size > 0 else b"-",
                referer,
                userAgent,
            )
    return _COMBINED % (
        escapeLogItem(host),
        _optional(ident),
        b'""' if user == b"" else _optional(user),
        formatTime(when),
        escapeLogItem(requestLine),
        status,
        b"%d" % (size,) if size > 0 else b"-",
        _optional(referer),
        _optional(userAgent),
    )


@implementer(IAccessLog)
class AccessLog:
    """
    An access log appended to a file descriptor.

    Each line is one C{os.write} to a descriptor opened with C{O_APPEND}, so
    lines from several worker processes sharing one file never interleave.

    @ivar path: The path the log was opened with; C{"-"} for standard output.
    @type path: L{str}
    @ivar fd: The descriptor lines are written to.
    @type fd: L{int}
    """

    _log = ProxyLogger()
    STDOUT = "-"
    _FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    _MODE = 0o644

    def __init__(self, path, fd):
        """
        Use C{fd}, already open, as the log at C{path}; see L{open}.
        """
        self.path = path
        self.fd = fd

    @classmethod
    def open(cls, path):
        """
        Open an access log.

        @param path: A file to append to, created if missing, or C{"-"} for
            standard output.
        @type path: L{str}

        @return: The open log.
        @rtype: L{AccessLog}

        @raise OSError: If the file cannot be opened.
        """
        if path == cls.STDOUT:
            return cls(path, 1)
        return cls(path, os.open(path, cls._FLAGS, cls._MODE))

    def write(self, line):
        """
        Write one line with one C{os.write}; see L{IAccessLog.write}.

        Only standard output, which may be a pipe, is written again after a
        short write: a second write to a shared file could land after
        another process's line.
        """
        try:
            written = os.write(self.fd, line)
            while self.path == self.STDOUT and written < len(line):
                line = line[written:]
                written = os.write(self.fd, line)
        except OSError as e:
            self._log.error("access log {path} write failed: {error}",
                            path=self.path, error=e)

    def reopen(self):
        """
        Open the file again at its path, after rotation moved it away.

        The new file takes over the old descriptor's number, so no write can
        fall between closing one and opening the other.  Standard output is
        left as it is.

        @raise OSError: If the file cannot be opened; the log keeps writing
            to the old file.
        """
        if self.path == self.STDOUT:
            return
        fd = os.open(self.path, self._FLAGS, self._MODE)
        try:
            os.dup2(fd, self.fd, inheritable=False)
        finally:
            os.close(fd)

    def close(self):
        """
        Close the file; standard output stays open for everyone else.
        """
        if self.path != self.STDOUT:
            os.close(self.fd)


@implementer(IAccessLog)
class MemoryAccessLog:
    """
    An access log kept in memory, for tests.

    @ivar lines: Every line written, in order.
    @type lines: L{list} of L{bytes}
    @ivar reopened: How many times L{reopen} was called.
    @type reopened: L{int}
    @ivar closed: Whether L{close} was called.
    @type closed: L{bool}
    """

    def __init__(self):
        """
        Start empty and open.
        """
        self.lines = []
        self.reopened = 0
        self.closed = False

    def write(self, line):
        """
        Record one line; see L{IAccessLog.write}.
        """
        self.lines.append(line)

    def reopen(self):
        """
        Count a reopen, as L{AccessLog.reopen} would do one.
        """
        self.reopened += 1

    def close(self):
        """
        Mark the log closed.
        """
        self.closed = True
