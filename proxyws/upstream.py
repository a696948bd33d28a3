"""
Upstreams: groups of backends (members) that routes balance their requests
over, with the state of each member and the choice of a member for a
request.

An C{[[upstream]]} table of the config becomes an L{UpstreamSettings}; a
route with C{upstream = "name"} takes its requests to one of its members.
L{Upstreams} is the registry the running server keeps: one L{Upstream}
per table, one L{MemberState} per member (L{proxyws.members}: up or down,
draining, open connections and websockets, failures, the last check), the
active checkers (L{proxyws.health}), and L{Upstreams.update} for a reload.

The request path (L{proxyws.upstreamproxy}), for each request and
websocket of an upstream route::

    upstream = upstreams.get(route.upstream)
    view = None
    if upstream.needsRequest:              # hash policy or affinity
        view = selectionRequest(clientAddress, headers, path, captures)
    choice = upstream.choose(view, exclude=tried)   # UpstreamUnavailable: 503
    member = choice.member
    member.opened()                        # member.closed() when it ends
    # Connect to member.backend (pool key, TLS, Host header); the target
    # the route computed is right for every member.  When choice.setCookie
    # is set, the response carries it and affinity.NOCACHE; with a cookie,
    # the request sent on drops it (affinity.stripCookie).
    member.failed("connection refused")   # or member.succeeded()

and answers L{UpstreamUnavailable} (in L{proxyws.errors}, named here too)
with 503 and C{Retry-After}.  The balancing policies are in
L{proxyws.balancing}; the affinity keys (SockJS sessions, the member
cookie) and the request view in L{proxyws.affinity}; the health rules and
checks in L{proxyws.health}.
"""

import math
import random
from collections import OrderedDict

from .affinity import sockjsKey
from .balancing import hash64, rendezvous, selectorFor
from .errors import UpstreamUnavailable
from .health import ActiveChecker, checkMember
from .members import Choice, MemberState
from .values import (
    CheckSettings,
    CookieSettings,
    HashKey,
    MemberSettings,
    UpstreamSettings,
    derivedName,
)

# The settings and member states are defined elsewhere and named here too,
# for the request path's one import.
__all__ = [
    "CheckSettings",
    "Choice",
    "CookieSettings",
    "HashKey",
    "MemberSettings",
    "MemberState",
    "SESSION_MEMORY",
    "UpstreamSettings",
    "Upstream",
    "UpstreamUnavailable",
    "Upstreams",
    "derivedName",
    "memberBackends",
]

# The most SockJS session keys an upstream remembers the member of, for
# draining members (Upstream.choose): about 150 bytes each, 10 MB at most.
SESSION_MEMORY = 65536


class Upstream:
    """
    One upstream: its members' states, its policy and its affinity; the
    choice of a member for each request.

    @ivar name: its name.
    @ivar settings: its L{UpstreamSettings}.
    @ivar members: the L{MemberState}s, in config order.
    @ivar retries: how many other members a request that could not be sent
        may try (each with the members tried so far in C{exclude}).
    @ivar needsRequest: whether L{choose} reads the request (the C{hash}
        policy, or affinity); when false, the request path passes L{None}
        and builds no L{proxyws.affinity.SelectionRequest}.
    @ivar cookieName: the name of the affinity cookie (L{bytes}), which
        members never see, or L{None} without a cookie.
    """

    def __init__(self, settings, reactor, tlsPolicy, rng, probe=checkMember):
        """
        @param settings: its L{UpstreamSettings}.
        @param reactor: the reactor (clock, and TCP for the checks).
        @param tlsPolicy: see L{proxyws.health.checkMember}.
        @param rng: the L{random.Random} of the C{random_two} policy.
        @param probe: the function that checks one member.
        """
        self._reactor = reactor
        self._tlsPolicy = tlsPolicy
        self._random = rng
        self._probe = probe
        self._checker = None
        self._running = False
        # SockJS session key -> name of the member it was sent to, most
        # recent last (see choose).
        self._sessions = OrderedDict()
        self.settings = None
        self.members = ()
        self.update(settings)

    def update(self, settings, tlsPolicy=None):
        """
        Take new settings (a reload): members whose backend (URL and TLS
        settings) is unchanged keep their state; the others start afresh.
        The active checks restart when they, the members or the TLS policy
        changed.

        @param settings: the new L{UpstreamSettings} of the same name.
        @param tlsPolicy: the new config's TLS policy, or L{None} to keep
            the one it has.
        """
        previous, checks = self.members, self.settings and self.settings.check
        newPolicy = tlsPolicy is not None and tlsPolicy is not self._tlsPolicy
        if newPolicy:
            self._tlsPolicy = tlsPolicy
        kept = {member.settings.backend: member for member in previous}
        members = []
        for index, memberSettings in enumerate(settings.members):
            member = kept.pop(memberSettings.backend, None)
            if member is None:
                member = MemberState(self, memberSettings, index, self._reactor)
            member.configure(memberSettings, index, settings.cookie)
            members.append(member)
        for member in kept.values():
            member.retire()
        self.settings, self.name, self.members = settings, settings.name, tuple(members)
        self.retries = settings.retries
        # A plugin's policy (proxyws.plugins) is given every request.
        self.needsRequest = (
            settings.policy == "hash"
            or settings.affinity != "none"
            or settings.policyPlugin is not None
        )
        self._selector = selectorFor(settings, self._random)
        self._byName = {member.name.encode("ascii"): member for member in members}
        self.cookieName = settings.cookie.name.encode("ascii") if settings.cookie else None
        self._sockjs = settings.affinity == "sockjs"
        self.membersChanged()
        if settings.check is None:
            for member in members:
                member.resetChecks()
        if self._running and (newPolicy or self.members != previous or settings.check != checks):
            self._startChecks()

    def membersChanged(self):
        """
        A member went up or down, or the members changed: recompute who
        may be chosen.
        """
        self._up = tuple(member for member in self.members if member.up)
        self._candidates = tuple(member for member in self._up if not member.draining)

    def start(self):
        """
        Start the active checks, if the upstream has them.
        """
        self._running = True
        self._startChecks()

    def stop(self):
        """
        Stop the active checks and the members' timers.
        """
        self._running = False
        if self._checker is not None:
            self._checker.stop()
            self._checker = None
        for member in self.members:
            member.stop()

    def _startChecks(self):
        if self._checker is not None:
            self._checker.stop()
            self._checker = None
        check = self.settings.check
        if check is not None:
            self._checker = ActiveChecker(
                self._reactor, check, self.members, self._tlsPolicy, self._probe
            )
            self._checker.start()

    def choose(self, request=None, exclude=frozenset()):
        """
        Choose the member for a request.

        With C{affinity = "sockjs"}, a request of a SockJS session (see
        L{proxyws.affinity.sockjsKey}) goes to the member rendezvous
        hashing gives its key among the members that are up, draining ones
        included: every transport, reconnect and websocket of the session
        lands there, in every process.  When that member is draining, the
        session stays on it only if this process has sent the key there
        before (it remembers the last L{SESSION_MEMORY} keys); a new
        session goes to the member hashing gives among the others.

        A request that names a member in the affinity cookie (C{affinity =
        "cookie"}, or C{"sockjs"} with a C{cookie} table) goes to that
        member while it is up, draining or not.  Every other request goes to
        the member the policy picks among those up and not draining; with a
        cookie, the choice carries the C{Set-Cookie} that names it.

        Call it on the reactor thread, and L{MemberState.opened} on the
        member at once.

        @param request: a L{proxyws.affinity.SelectionRequest}, or L{None}
            when L{needsRequest} is false.
        @param exclude: members this request already failed on (retries).
        @return: a L{Choice}.
        @raise UpstreamUnavailable: when no member can take it.
        """
        if self.needsRequest and request is not None:
            sticky = self._sticky(request, exclude)
            if sticky is not None:
                return sticky
        candidates = self._candidates
        if exclude:
            candidates = tuple(member for member in candidates if member not in exclude)
        if not candidates:
            raise self._unavailable()
        return self._selector.select(candidates, request).newChoice

    def _sticky(self, request, exclude):
        """
        The choice affinity makes for a request, or L{None}.
        """
        if self._sockjs:
            key = sockjsKey(request.path)
            if key is not None:
                return self._session(key, exclude).choice
        if self.cookieName is not None:
            name = request.cookie(self.cookieName)
            member = self._byName.get(name) if name else None
            if member is not None and member.up and member not in exclude:
                return member.choice
        return None

    def _session(self, key, exclude):
        """
        The member of a SockJS session key.
        """
        up = self._up
        if exclude:
            up = tuple(member for member in up if member not in exclude)
        if not up:
            raise self._unavailable()
        keyHash = hash64(key)
        member = rendezvous(keyHash, up)
        if member.draining and self._sessions.get(key) != member.name:
            fresh = tuple(other for other in up if not other.draining)
            if not fresh:
                raise self._unavailable()
            member = rendezvous(keyHash, fresh)
        sessions = self._sessions
        sessions[key] = member.name
        sessions.move_to_end(key)
        if len(sessions) > SESSION_MEMORY:
            sessions.popitem(last=False)
        return member

    def _unavailable(self):
        """
        The error for a request no member can take, with the seconds after
        which the first member may be back.
        """
        now = self._reactor.seconds()
        waits = [member.comesBackIn(now) for member in self.members]
        waits = [wait for wait in waits if wait is not None]
        wait = min(waits) if waits else self.settings.failTimeout
        return UpstreamUnavailable(self.name, max(1, math.ceil(wait)))

    def snapshot(self):
        """
        @return: the upstream and its members as a plain L{dict}.
        """
        return {
            "name": self.name,
            "policy": self.settings.policy,
            "affinity": self.settings.affinity,
            "retries": self.retries,
            "members": [member.snapshot() for member in self.members],
        }


class Upstreams:
    """
    The registry of the running server's upstreams, built from a config and
    updated on each reload.
    """

    def __init__(self, reactor, tlsPolicy, rng=None, probe=checkMember):
        """
        @param reactor: the reactor (clock, and TCP for the checks).
        @param tlsPolicy: a callable taking a L{proxyws.values.Backend} and
            returning its C{IOpenSSLClientConnectionCreator}
            (L{proxyws.service.BackendTLSPolicy}); it must know the
            backends of every member (see L{memberBackends}).
        @param rng: the L{random.Random} of the C{random_two} policy.
        @param probe: the function that checks one member, replaced in
            tests.
        """
        self._reactor = reactor
        self._tlsPolicy = tlsPolicy
        self._random = rng or random.Random()
        self._probe = probe
        self._upstreams = {}
        self._running = False

    @classmethod
    def fromConfig(cls, config, reactor, tlsPolicy, rng=None, probe=checkMember):
        """
        The registry of a config's upstreams, not started.

        @param config: a L{proxyws.values.Config}.
        @return: an L{Upstreams}.
        """
        registry = cls(reactor, tlsPolicy, rng, probe)
        registry.update(config)
        return registry

    def update(self, config, tlsPolicy=None):
        """
        Take a new config (a reload): upstreams that are gone stop, new ones
        start (when the registry runs), and the others update in place (see
        L{Upstream.update}), so that references to them stay good.

        @param config: the new L{proxyws.values.Config}.
        @param tlsPolicy: the TLS policy of the new config, if it changed.
        """
        if tlsPolicy is not None:
            self._tlsPolicy = tlsPolicy
        wanted = {settings.name: settings for settings in config.upstreams}
        for name in [name for name in self._upstreams if name not in wanted]:
            self._upstreams.pop(name).stop()
        upstreams = {}
        for name, settings in wanted.items():
            upstream = self._upstreams.get(name)
            if upstream is None:
                upstream = Upstream(settings, self._reactor, self._tlsPolicy, self._random, self._probe)
                if self._running:
                    upstream.start()
            else:
                upstream.update(settings, self._tlsPolicy)
            upstreams[name] = upstream
        self._upstreams = upstreams

    def get(self, name):
        """
        @param name: an upstream's name (a route's C{upstream}).
        @return: its L{Upstream}.
        @raise KeyError: when there is none of that name.
        """
        return self._upstreams[name]

    def __iter__(self):
        """
        @return: an iterator over the L{Upstream}s, in config order.
        """
        return iter(self._upstreams.values())

    def start(self):
        """
        Start every upstream's active checks.
        """
        self._running = True
        for upstream in self:
            upstream.start()

    def stop(self):
        """
        Stop every check and timer.
        """
        self._running = False
        for upstream in self:
            upstream.stop()

    def snapshot(self):
        """
        @return: a L{dict} of upstream name to L{Upstream.snapshot}.
        """
        return {upstream.name: upstream.snapshot() for upstream in self}

    def gauges(self):
        """
        The values of the per-member gauges
        (C{proxyws_upstream_member_up}, C{..._connections}).

        @return: a L{list} of C{(upstream, member, up, connections,
            websockets)}: names (L{str}), a L{bool} and two L{int}s.
        """
        return [
            (upstream.name, member.name, member.up, member.connections, member.websockets)
            for upstream in self
            for member in upstream.members
        ]


def memberBackends(config):
    """
    The backend of every member, for the TLS policy (which must make a
    client creator for each secure one, as for routes' backends).

    @param config: a L{proxyws.values.Config}.
    @return: a L{list} of C{(keyPath, Backend)}, C{keyPath} such as
        C{"upstream[0].members[1]"}.
    """
    return [
        ("{}.members[{}]".format("upstream[{}]".format(upstream.index), n), member.backend)
        for upstream in config.upstreams
        for n, member in enumerate(upstream.members)
    ]
