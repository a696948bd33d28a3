"""
What a member choice reads of a request, as pure functions over plain
values: the request view (L{SelectionRequest}), the SockJS session key in a
path (L{sockjsKey}), the key the C{hash} policy hashes (L{requestKey}), and
the affinity cookie (L{setCookieValue}, L{stripCookie}, L{withoutCookie}).

SockJS and Shiny Server URLs
============================

A SockJS client talks to C{<prefix>/<server>/<session>/<transport>}: a
random server number, a random session id and the transport (C{websocket},
C{xhr}, C{xhr_send}, C{xhr_streaming}, C{eventsource}, ...), one URL for
every request of a session.  Shiny Server's client (shiny-server-client)
puts parameters in front of them, after C{/__sockjs__/}, each a path segment
C{name=value} in the order C{n, o, t, w}::

    /app/__sockjs__/n=<robust id>/<server>/<session>/<transport>
    /app/__sockjs__/o=<robust id>/<server>/<session>/<transport>
    /app/__sockjs__/n=<id>/t=<token>/w=<worker>/<server>/<session>/<transport>

C{n=} opens a "robust" connection whose id outlives the SockJS session: when
the connection breaks, the client opens a new SockJS session with C{o=} and
the same id, and the server resumes where it was.  C{w=} names a worker
(RStudio Connect, Shiny Server Pro) and C{t=} carries a token.  The key of
a session is therefore the C{w=} value when there is one, else the robust
id, else the SockJS C{<server>/<session>} pair.
"""

import attr

# The transports of a SockJS session URL (the SockJS protocol's list).
SOCKJS_TRANSPORTS = frozenset(
    [
        b"websocket",
        b"xhr",
        b"xhr_send",
        b"xhr_streaming",
        b"eventsource",
        b"htmlfile",
        b"jsonp",
        b"jsonp_send",
    ]
)

_SOCKJS = b"/__sockjs__/"

# The session key of each Shiny Server parameter, in order of preference:
# the worker, then the robust id (n= on the first connection, o= on a
# reconnect: one key for both).
_KEY_PARAMETERS = ((b"w", b"w:"), (b"n", b"r:"), (b"o", b"r:"))

# What a response that inserts the affinity cookie carries besides it, so
# that a shared cache never hands one client's member to another (HAProxy's
# "nocache").
NOCACHE = (b"Cache-Control", b"private")


@attr.s(frozen=True, slots=True)
class SelectionRequest:
    """
    What a member choice may read of a request.

    @ivar clientAddress: the client's address as text (after
        C{trusted_proxies}).
    @ivar headers: C{(name, value)} pairs, names lower-cased, in order.
    @ivar path: the request path (normalized, without the query).
    @ivar captures: the groups of the route's C{match}, from group 0 (the
        whole match); each L{bytes}, or L{None} for a group that did not
        take part; empty for a prefix route.
    @ivar cookies: C{(name, value)} pairs of the C{Cookie} headers.
    """

    clientAddress = attr.ib()
    headers = attr.ib()
    path = attr.ib()
    captures = attr.ib(default=())
    cookies = attr.ib(default=())

    def header(self, name):
        """
        @param name: a lower-cased header name (L{bytes}).
        @return: its first value, or L{None}.
        """
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def cookie(self, name):
        """
        @param name: a cookie name (L{bytes}).
        @return: the value of the first cookie of that name, or L{None}.
        """
        for key, value in self.cookies:
            if key == name:
                return value
        return None


def selectionRequest(clientAddress, headers, path, captures=(), cookies=None):
    """
    Build the view of a request a member choice reads.

    @param clientAddress: the client's address (L{str}).
    @param headers: C{(name, values)} pairs, as Twisted's
        C{Headers.getAllRawHeaders} gives them.
    @param path: the request path (L{bytes}, without the query).
    @param captures: the groups of the route's match, from group 0, such as
        C{match.groups()} with C{match.group(0)} in front.
    @param cookies: C{(name, value)} pairs or a mapping of the request's
        cookies (as Twisted's C{request.received_cookies}); L{None} to read
        them from the C{Cookie} headers.
    @return: a L{SelectionRequest}.
    """
    pairs = tuple((name.lower(), value) for name, values in headers for value in values)
    if cookies is None:
        cookies = parseCookies(value for name, value in pairs if name == b"cookie")
    elif hasattr(cookies, "items"):
        cookies = tuple(cookies.items())
    else:
        cookies = tuple(cookies)
    return SelectionRequest(clientAddress, pairs, path, tuple(captures), cookies)


def parseCookies(headerValues):
    """
    The cookies of C{Cookie} header values (RFC 6265 5.4: C{name=value}
    pairs separated by C{;}).

    @param headerValues: an iterable of header values (L{bytes}).
    @return: a L{tuple} of C{(name, value)}; pairs without C{=} are left
        out.
    """
    found = []
    for header in headerValues:
        for pair in header.split(b";"):
            name, sep, value = pair.partition(b"=")
            if sep:
                found.append((name.strip(), value.strip()))
    return tuple(found)


def sockjsKey(path):
    """
    The session key of a SockJS or Shiny Server request.

    @param path: the request path (L{bytes}).
    @return: C{b"w:<worker>"}, C{b"r:<robust id>"} or
        C{b"s:<server>/<session>"}; L{None} for a path that is not a
        session's (the page, C{/__sockjs__/info}, static files).
    """
    at = path.find(_SOCKJS)
    if at < 0:
        return None
    segments = path[at + len(_SOCKJS) :].split(b"/")
    parameters = {}
    index = 0
    for segment in segments:
        name, sep, value = segment.partition(b"=")
        if not (sep and name.isalpha()):
            break
        parameters.setdefault(name, value)
        index += 1
    for name, prefix in _KEY_PARAMETERS:
        value = parameters.get(name)
        if value:
            return prefix + value
    rest = segments[index:]
    if len(rest) != 3 or rest[2] not in SOCKJS_TRANSPORTS:
        return None
    server, session = rest[0], rest[1]
    if not server or not session or b"." in server or b"." in session:
        return None
    return b"s:" + server + b"/" + session


def requestKey(hashKey, request):
    """
    The key the C{hash} policy hashes for a request.

    @param hashKey: a L{proxyws.upstream.HashKey}.
    @param request: a L{SelectionRequest}.
    @return: L{bytes}, or L{None} when the request has no such value (the
        policy then falls back to round robin, as HAProxy's C{balance hdr}
        does).
    """
    source = hashKey.source
    if source == "client":
        value = request.clientAddress.encode("ascii", "replace")
    elif source == "header":
        value = request.header(hashKey.name)
    elif source == "cookie":
        value = request.cookie(hashKey.name)
    else:
        captures = request.captures
        value = captures[hashKey.name] if hashKey.name < len(captures) else None
    return value or None


def setCookieValue(cookie, memberName):
    """
    The C{Set-Cookie} value that sends a client to a member.

    @param cookie: the upstream's L{proxyws.upstream.CookieSettings}.
    @param memberName: the member's name (L{str}).
    @rtype: L{bytes}
    """
    parts = ["{}={}".format(cookie.name, memberName), "Path=" + cookie.path]
    if cookie.domain:
        parts.append("Domain=" + cookie.domain)
    if cookie.maxAge:
        parts.append("Max-Age={}".format(cookie.maxAge))
    if cookie.secure:
        parts.append("Secure")
    if cookie.httpOnly:
        parts.append("HttpOnly")
    parts.append("SameSite=" + cookie.sameSite)
    return "; ".join(parts).encode("ascii")


def stripCookie(headerValue, name):
    """
    A C{Cookie} header value without the affinity cookie, which the member
    never sees (HAProxy's "indirect").

    @param headerValue: the client's C{Cookie} value (L{bytes}).
    @param name: the affinity cookie's name (L{bytes}).
    @return: the value without the cookie, or L{None} when nothing is
        left (the header is then dropped).
    """
    if name not in headerValue:
        return headerValue
    kept = [
        pair.strip()
        for pair in headerValue.split(b";")
        if pair.partition(b"=")[0].strip() != name and pair.strip()
    ]
    return b"; ".join(kept) or None


def withoutCookie(headers, name):
    """
    Request headers without the affinity cookie in their C{Cookie} values
    (L{stripCookie}); a C{Cookie} header left empty is dropped.

    @param headers: C{(name, values)} pairs, as Twisted's
        C{Headers.getAllRawHeaders} gives them.
    @param name: the affinity cookie's name (L{bytes}).
    @return: a L{list} of C{(name, values)} pairs.
    """
    out = []
    for header, values in headers:
        if header.lower() == b"cookie":
            values = [v for v in (stripCookie(value, name) for value in values) if v is not None]
            if not values:
                continue
        out.append((header, values))
    return out
