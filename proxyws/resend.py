"""
When a request that failed before any of its answer came may be sent
again, and where: a pure rule over plain values (L{resendTo}), the same for
every route, and how a backend connection's failure is classed
(L{failureKind}).

L{proxyws.httpproxy} applies it: a plain route has one backend, so only
L{SAME} applies to it (a kept-alive connection found closed is tried again
on a new one); an upstream route (L{proxyws.upstreamproxy}) may also send
the request to the C{NEXT} member, at most its C{retries} times.
"""

from .errors import BadResponse

# Methods that may be sent again on a fresh connection when a kept-alive one
# turned out to be closed before any response came (RFC 9110 9.2.2), and
# only when they carry no body.
IDEMPOTENT = frozenset([b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"])

# How a request failed before any of its answer was relayed (failureKind).
CONNECT = "connect"  # no connection: refused, timed out, host not found
TLS = "tls"  # the TLS handshake failed: the backend's application saw nothing
STALE = "stale"  # a kept-alive connection was closed before any byte of the answer
CLOSED = "closed"  # a new connection closed before the answer: it may have been taken
INVALID = "invalid"  # the answer could not be relayed
TIMEOUT = "timeout"  # no answer within response_timeout

# Where a request that failed may be sent again (see resendTo).
SAME = "same backend, on a new connection"
NEXT = "next member of the upstream"

# When a failed request may be sent again: kind -> (where, the methods that
# may, whether it may have a body).  The invariant: a request is sent again
# only when nothing of it can have been taken by the backend's application
# (for a non-idempotent one: it never reached it), and never once any of
# its body went out on a connection (the body streams and is not kept) or
# any of its answer came.  A stale kept-alive connection is no fault of
# the backend, which closed it idle as servers do: the same backend (for an
# upstream, the same member, which keeps the session there) gets it once
# on a new connection.  The other kinds are the member's fault: the next
# member of an upstream may take the request, at most "retries" of them.
RESEND = {
    CONNECT: (NEXT, None, True),
    TLS: (NEXT, None, False),
    STALE: (SAME, IDEMPOTENT, False),
}


def resendTo(kind, method, hasBody):
    """
    Where a request that failed before any of its answer came may be sent
    again (the rule of L{RESEND}).

    @param kind: how it failed: L{CONNECT}, L{TLS}, L{STALE}, L{CLOSED},
        L{INVALID} or L{TIMEOUT}.
    @param method: the request's method.
    @param hasBody: whether the request has a body.
    @return: L{SAME}, L{NEXT}, or L{None} for nowhere.
    """
    rule = RESEND.get(kind)
    if rule is None:
        return None
    where, methods, bodyAllowed = rule
    if (hasBody and not bodyAllowed) or (methods is not None and method not in methods):
        return None
    return where


def failureKind(error, responded, reused, timedOut):
    """
    How a backend connection that carried a request failed before a whole
    answer head came.

    @param error: what the connection reported (a L{BadResponse}, or a
        L{proxyws.errors.ConnectionLost} with C{tlsFailed}).
    @param responded: whether any of the answer had arrived.
    @param reused: whether the connection had carried a request before.
    @param timedOut: whether the proxy closed it (response timeout).
    @return: L{TIMEOUT}, L{INVALID}, L{TLS}, L{STALE} or L{CLOSED}.
    """
    if timedOut:
        return TIMEOUT
    if isinstance(error, BadResponse):
        return INVALID
    if getattr(error, "tlsFailed", False):
        return TLS
    if reused and not responded:
        return STALE
    return CLOSED
