"""
The state of each member of an upstream (L{MemberState}), and the choice of
one for a request (L{Choice}).

A member's state is kept in one place: its open requests and websockets,
its recent failures and last check, whether it is up, why it last changed.
The request path reports to it (L{MemberState.opened}, L{MemberState.failed},
...), the active checker hands it its results, and the upstream
(L{proxyws.upstream.Upstream}) reads it to choose.
"""

import attr
from zope.interface import implementer

from .affinity import setCookieValue
from .balancing import memberSeed
from .health import activeRule, passiveRule
from .interfaces import IUpstreamMember
from .logs import ProxyLogger

_log = ProxyLogger()


@attr.s(frozen=True, slots=True)
class Choice:
    """
    The member chosen for a request, and what the response must carry.

    @ivar member: the L{MemberState}.
    @ivar setCookie: a C{Set-Cookie} value (L{bytes}) that the response to
        the client must carry, with L{proxyws.affinity.NOCACHE}; L{None}
        when it carries nothing.
    """

    member = attr.ib()
    setCookie = attr.ib(default=None)


@implementer(IUpstreamMember)
class MemberState:
    """
    The state of one member of an upstream: the one place that knows it.

    It is up (takes requests) unless a passive rule or its active checks
    have taken it down; each change is logged once, with why.  Draining is
    a setting of the config, apart from up and down.  A reload keeps the
    state of a member whose URL and TLS settings stay the same.

    @ivar settings: its L{MemberSettings}.
    @ivar name: its name; C{index}, C{weight}, C{backend}, C{template} and
        C{draining} are its settings' too (C{index}: its position now).
    @ivar up: whether it takes requests.
    @ivar requests: HTTP exchanges with it in progress.
    @ivar websockets: websockets to it that are open.
    @ivar connections: C{requests + websockets} (what C{least_conn} counts).
    @ivar failures: the times of its recent failures (passive checks).
    @ivar lastFailure: the last failure reported, as text, or L{None}.
    @ivar lastCheck: C{(time, passed, detail)} of its last active check, or
        L{None}.
    @ivar downSince: when it went down, or L{None} while up.
    @ivar why: why it last went down or came up, or L{None}.
    @ivar choice: the L{Choice} of it without a cookie; C{newChoice}, with
        the cookie an upstream with a cookie inserts for a new session.
    """

    def __init__(self, upstream, settings, index, reactor):
        """
        @param upstream: the L{Upstream} it belongs to.
        @param settings: its L{MemberSettings}.
        @param index: its position in the upstream's members.
        @param reactor: the clock.
        """
        self._upstream = upstream
        self._reactor = reactor
        self.requests = self.websockets = self.connections = 0
        self.up = True
        self.failures = ()
        self.lastFailure = self.lastCheck = self.downSince = self.why = None
        self._passiveCall = None
        self._checkUp = True
        self._checkStreak = 0
        self._retired = False
        self.settings = None
        self.configure(settings, index, None)

    def configure(self, settings, index, cookie):
        """
        Take the member's settings (at start and on a reload).

        @param settings: its L{MemberSettings}.
        @param index: its position in the upstream's members.
        @param cookie: the upstream's L{CookieSettings}, or L{None}.
        """
        if self.settings is not None and self.settings.drain != settings.drain:
            _log.info(
                "upstream {upstream} member {member} ({url}) {what}",
                upstream=self._upstream.name,
                member=settings.name,
                url=settings.url,
                what="draining: no new sessions" if settings.drain else "no longer draining",
            )
        self.settings = settings
        self.index = index
        self.name = settings.name
        self.weight = settings.weight
        self.backend = settings.backend
        self.template = settings.template
        self.draining = settings.drain
        self.seed = memberSeed(settings.name)
        self.choice = Choice(self)
        self.newChoice = self.choice
        if cookie is not None:
            self.newChoice = Choice(self, setCookieValue(cookie, settings.name))

    def __repr__(self):
        """
        @return: C{<MemberState upstream/name url>}.
        """
        return "<MemberState {}/{} {}>".format(self._upstream.name, self.name, self.backend.url)

    def opened(self):
        """
        An HTTP exchange with this member starts: call it right after the
        choice (the choices that follow count it), and L{closed} once.
        """
        self.requests += 1
        self.connections += 1

    def closed(self):
        """
        An exchange counted by L{opened} is over.
        """
        self.requests -= 1
        self.connections -= 1

    def webSocketOpened(self):
        """
        A websocket to this member is open (after the backend's 101); it
        counts as a connection until L{webSocketClosed}.
        """
        self.websockets += 1
        self.connections += 1

    def webSocketClosed(self):
        """
        A websocket counted by L{webSocketOpened} is closed.
        """
        self.websockets -= 1
        self.connections -= 1

    def failed(self, reason):
        """
        A request could not reach this member (connect refused or timed
        out, TLS refused) or it answered 502, 503 or 504: the passive rule
        counts it.  An upstream of one member is never taken down by it
        (as nginx).

        @param reason: a short text for the log and C{/status}.
        """
        self.lastFailure = reason
        settings = self._upstream.settings
        if self._retired or self._passiveCall is not None or len(self._upstream.members) < 2:
            return
        self.failures, down = passiveRule(
            self.failures, self._reactor.seconds(), settings.maxFails, settings.failTimeout
        )
        if down:
            count, self.failures = len(self.failures), ()
            self._passiveCall = self._reactor.callLater(settings.failTimeout, self._passiveOver)
            self._changed(
                "{} failure{} within {:g} s, the last: {}".format(
                    count, "" if count == 1 else "s", settings.failTimeout, reason
                )
            )

    def succeeded(self):
        """
        A request to this member got an answer other than 502, 503 or 504:
        its earlier failures no longer count.
        """
        if self.failures:
            self.failures = ()

    def _passiveOver(self):
        self._passiveCall = None
        self._changed(
            "fail_timeout ({:g} s) passed since it was taken down".format(
                self._upstream.settings.failTimeout
            )
        )

    def checkResult(self, passed, detail):
        """
        Count one active check (called by L{proxyws.health.ActiveChecker}).

        @param passed: whether it passed.
        @param detail: what it found, as text.
        """
        check = self._upstream.settings.check
        if self._retired or check is None:
            return
        self.lastCheck = (self._reactor.seconds(), passed, detail)
        up, self._checkStreak = activeRule(
            self._checkUp, self._checkStreak, passed, check.rise, check.fall
        )
        if up != self._checkUp:
            self._checkUp = up
            if up:
                why = "{} checks passed in a row ({})".format(check.rise, detail)
            else:
                why = "{} checks failed in a row, the last: {}".format(check.fall, detail)
            self._changed(why)

    def resetChecks(self):
        """
        The upstream has no active checks any more: they no longer hold
        the member down.
        """
        self._checkStreak = 0
        if not self._checkUp:
            self._checkUp = True
            self._changed("active checks removed")

    def comesBackIn(self, now):
        """
        @param now: the time now.
        @return: seconds until it may be up again (while a passive rule
            holds it down, or its checks do), or L{None} while it is up.
        """
        check = self._upstream.settings.check
        if self._passiveCall is not None:
            return self._passiveCall.getTime() - now
        if not self._checkUp and check is not None:
            return check.interval * check.rise
        return None

    def stop(self):
        """
        Forget its timers (the server stops).
        """
        if self._passiveCall is not None and self._passiveCall.active():
            self._passiveCall.cancel()

    def retire(self):
        """
        It left the config: forget its timers, and ignore what the requests
        still under way report (their L{closed} still counts).
        """
        self.stop()
        self._retired = True

    def _changed(self, why):
        up = self._passiveCall is None and self._checkUp
        if up == self.up:
            return
        self.up, self.why = up, why
        self.downSince = None if up else self._reactor.seconds()
        fields = dict(upstream=self._upstream.name, member=self.name, url=self.backend.url, why=why)
        if up:
            _log.info("upstream {upstream} member {member} ({url}) up: {why}", **fields)
        else:
            _log.warn("upstream {upstream} member {member} ({url}) down: {why}", **fields)
        self._upstream.membersChanged()

    def snapshot(self):
        """
        @return: its state as a plain L{dict} (for the admin C{/status}).
        """
        checked = None
        if self.lastCheck is not None:
            time, passed, detail = self.lastCheck
            checked = {"time": time, "passed": passed, "detail": detail}
        return {
            "name": self.name,
            "url": self.backend.url,
            "weight": self.weight,
            "state": "down" if not self.up else "draining" if self.draining else "up",
            "up": self.up,
            "draining": self.draining,
            "connections": self.connections,
            "requests": self.requests,
            "websockets": self.websockets,
            "failures": len(self.failures),
            "lastFailure": self.lastFailure,
            "lastCheck": checked,
            "downSince": self.downSince,
            "why": self.why,
        }
