"""
The health of upstream members: the rules that take a member down and
bring it back, and the active checker.

Passive checks (L{passiveRule}) are nginx's C{max_fails} and
C{fail_timeout}: C{maxFails} failures (a connect failure, or a 502, 503 or
504 answer) within C{failTimeout} seconds take a member down for
C{failTimeout} seconds.  The request path reports the outcomes; the member
state (L{proxyws.upstream.MemberState}) applies the rule.

Active checks (L{ActiveChecker}, L{activeRule}) are HAProxy's: every
C{interval} seconds each member gets a check (an HTTP GET of a path whose
status must be one of the expected ones, or a plain TCP connect), and
C{fall} failed checks in a row take it down, C{rise} passed ones bring it
back.  A check of an C{https}/C{wss} member verifies the member's
certificate as the route's requests would, with the same TLS policy.
"""

import re

import attr
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.protocol import Factory, Protocol

# The status line of an HTTP/1.x answer; the rest of the answer is not read.
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])(?: |\r|$)")

# The most bytes read while waiting for a status line.
_MAX_STATUS_LINE = 8192

# Connect errors named for the log (anything else: its own message).
_REASONS = (
    ("ConnectionRefusedError", "connection refused"),
    ("TCPTimedOutError", "connect timed out"),
    ("TimeoutError", "connect timed out"),
    ("DNSLookupError", "host name not found"),
    ("NoRouteError", "no route to host"),
    ("ConnectionDone", "connection closed before a status line"),
    ("ConnectionLost", "connection lost before a status line"),
)


def passiveRule(failures, now, maxFails, failTimeout):
    """
    Record one failure of a member and say whether it is now down.

    @param failures: the times of its earlier failures, oldest first
        (a L{tuple} of seconds).
    @param now: the time of this failure.
    @param maxFails: failures within the window that take it down; 0 for
        never.
    @param failTimeout: the window, in seconds.
    @return: C{(failures, down)}: the failures still within the window,
        this one last, and whether there are C{maxFails} of them.
    """
    kept = tuple(t for t in failures if now - t < failTimeout) + (now,)
    return kept, bool(maxFails) and len(kept) >= maxFails


def activeRule(up, streak, passed, rise, fall):
    """
    Count one check result of a member.

    @param up: whether its checks have it up now.
    @param streak: how many checks in a row said otherwise before this one.
    @param passed: whether this check passed.
    @param rise: passed checks in a row that bring a down member up.
    @param fall: failed checks in a row that take an up member down.
    @return: C{(up, streak)} after this check.
    """
    if passed == up:
        return up, 0
    streak += 1
    if streak >= (fall if up else rise):
        return not up, 0
    return up, streak


def describe(reason):
    """
    A short text for why a check failed.

    @param reason: a L{twisted.python.failure.Failure}.
    @rtype: L{str}
    """
    from OpenSSL.SSL import Error as SSLError
    from service_identity import VerificationError

    if reason.check(SSLError, VerificationError):
        return "TLS handshake failed: {}".format(_tlsReason(reason.value))
    for name, text in _REASONS:
        if any(kind.__name__ == name for kind in reason.type.__mro__):
            return text
    return reason.getErrorMessage() or reason.type.__name__


def _tlsReason(error):
    """
    The reason OpenSSL or service-identity gave, in a few words.
    """
    mismatches = getattr(error, "errors", None)
    if mismatches:
        # service-identity: the certificate names other hosts.
        names = [_identity(mismatch.mismatched_id) for mismatch in mismatches]
        return "the certificate is not for " + ", ".join(names)
    reasons = getattr(error, "args", ())
    if reasons and isinstance(reasons[0], list) and reasons[0]:
        entry = reasons[0][-1]
        if isinstance(entry, tuple):
            return entry[-1]
    return str(error)


def _identity(wanted):
    """
    The name or address a certificate was checked for.
    """
    for attribute in ("hostname", "ip"):
        value = getattr(wanted, attribute, None)
        if value is not None:
            return value.decode("ascii") if isinstance(value, bytes) else str(value)
    return str(wanted)


def checkRequest(backend, check):
    """
    The request an HTTP check sends.

    @param backend: the member's L{proxyws.values.Backend}.
    @param check: the L{proxyws.upstream.CheckSettings}.
    @rtype: L{bytes}
    """
    return (
        b"GET " + check.path + b" HTTP/1.1\r\nHost: " + backend.hostHeader
        + b"\r\nUser-Agent: proxyws-check\r\nConnection: close\r\n\r\n"
    )


class _Probe(Protocol):
    """
    One check's connection: sends the request (for HTTP) and reads the
    status line, or is done once connected (for TCP).
    """

    def __init__(self, request, check, finish):
        self._request = request
        self._check = check
        self._finish = finish
        self._buffer = b""

    def connectionMade(self):
        """
        Send the request, or pass a TCP check.
        """
        if self._request is None:
            self._finish(True, "connected")
            self.transport.loseConnection()
        else:
            self.transport.write(self._request)

    def dataReceived(self, data):
        """
        Wait for the status line, then judge it.
        """
        self._buffer += data
        line, sep, _ = self._buffer.partition(b"\r\n")
        if not sep and len(self._buffer) < _MAX_STATUS_LINE:
            return
        found = _STATUS_LINE.match(line)
        if found is None:
            self._finish(False, "not an HTTP/1.x answer: {!r}".format(line[:40]))
        else:
            status = int(found.group(1))
            self._finish(self._check.passes(status), "HTTP status {}".format(status))
        self.transport.loseConnection()

    def connectionLost(self, reason):
        """
        A connection that closed before an answer fails the check.
        """
        self._finish(False, describe(reason))


def checkMember(reactor, backend, check, tlsPolicy):
    """
    Check one member once.

    @param reactor: the reactor (clock and TCP).
    @param backend: the member's L{proxyws.values.Backend}.
    @param check: the L{proxyws.upstream.CheckSettings}.
    @param tlsPolicy: a callable taking a L{proxyws.values.Backend} and
        returning its C{IOpenSSLClientConnectionCreator}, as the routes'
        (L{proxyws.service.BackendTLSPolicy}); used for HTTP checks of
        C{https}/C{wss} members.  A TCP check only connects, without TLS.
    @return: a L{Deferred} firing with C{(passed, detail)}: whether the
        check passed and a short text (C{"HTTP status 200"},
        C{"connection refused"}, C{"timed out after 2 s"}, ...).  It never
        fails; cancelling it closes the connection.
    """
    return _Check(reactor, backend, check, tlsPolicy).done


class _Check(Factory):
    """
    One check of one member: the connection, its deadline and the result.

    @ivar done: the L{Deferred} of L{checkMember}.
    """

    noisy = False

    def __init__(self, reactor, backend, check, tlsPolicy):
        from .pool import backendEndpoint

        request = None
        if check.type == "tcp":
            # A plain connect, whatever the scheme.
            backend = attr.evolve(backend, secure=False)
        else:
            request = checkRequest(backend, check)
        self._probe = _Probe(request, check, self._finish)
        self._timeout = check.timeout
        self.done = Deferred(self._cancel)
        self._timer = reactor.callLater(check.timeout, self._timedOut)
        # The endpoint's own connect timeout comes later than the check's,
        # so that a slow connect always reads "timed out after N s".
        try:
            endpoint = backendEndpoint(reactor, backend, check.timeout + 1, tlsPolicy)
        except (KeyError, TypeError):
            # A TLS policy that does not know this member (or none at all).
            self._connecting = succeed(None)
            self._finish(False, "no TLS settings for this member")
            return
        self._connecting = endpoint.connect(self)
        self._connecting.addErrback(lambda reason: self._finish(False, describe(reason)))

    def buildProtocol(self, addr):
        """
        @return: the check's L{_Probe}.
        """
        return self._probe

    def _finish(self, passed, detail):
        if self._timer.active():
            self._timer.cancel()
        if not self.done.called:
            self.done.callback((passed, detail))

    def _close(self):
        transport = self._probe.transport
        if transport is not None:
            transport.abortConnection()
        self._connecting.cancel()

    def _timedOut(self):
        self._finish(False, "timed out after {:g} s".format(self._timeout))
        self._close()

    def _cancel(self, done):
        if self._timer.active():
            self._timer.cancel()
        self._close()


class ActiveChecker:
    """
    Checks each member of one upstream every C{interval} seconds (counted
    from the end of its previous check, so checks of one member never
    overlap) and hands each result to the member's C{checkResult}.

    @ivar running: whether it was started and not stopped.
    """

    running = False

    def __init__(self, reactor, check, members, tlsPolicy, probe=checkMember):
        """
        @param reactor: the reactor (clock and TCP).
        @param check: the L{proxyws.upstream.CheckSettings}.
        @param members: the L{proxyws.upstream.MemberState}s to check.
        @param tlsPolicy: see L{checkMember}.
        @param probe: the function that checks one member (L{checkMember}'s
            signature), replaced in tests.
        """
        self._reactor = reactor
        self._check = check
        self._members = tuple(members)
        self._tlsPolicy = tlsPolicy
        self._probe = probe
        self._calls = {}
        self._pending = {}

    def start(self):
        """
        Check every member now, then every C{interval} seconds.
        """
        self.running = True
        for member in self._members:
            self._schedule(member, 0)

    def stop(self):
        """
        Stop checking; a check under way is abandoned (its connection
        closed) and its result not counted.
        """
        self.running = False
        for call in self._calls.values():
            call.cancel()
        self._calls.clear()
        for pending in list(self._pending.values()):
            pending.cancel()
        self._pending.clear()

    def _schedule(self, member, delay):
        self._calls[member] = self._reactor.callLater(delay, self._run, member)

    def _run(self, member):
        del self._calls[member]
        pending = self._probe(self._reactor, member.backend, self._check, self._tlsPolicy)
        self._pending[member] = pending
        pending.addCallback(self._done, member)
        pending.addErrback(lambda reason: reason.trap(CancelledError))

    def _done(self, result, member):
        self._pending.pop(member, None)
        if not self.running:
            return
        passed, detail = result
        member.checkResult(passed, detail)
        self._schedule(member, self._check.interval)
