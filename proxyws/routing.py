"""
Pure request routing: which route takes a request, and where it goes.

Routes are tried in file order and the first match wins, as Apache's
C{ProxyPass} and C{ProxyPassMatch} directives are.  Nothing here does I/O;
every function takes and returns plain values, so the rules are tested as
tables in C{tests/test_routing.py}.

Paths are normalized before matching (L{normalizePath}): percent-encoded
unreserved characters are decoded, dot-segments are removed, and what is left
is the path that is matched and sent to the backend.  An encoded slash
(C{%2F}) stays encoded: it is not a path separator, so it can never be used to
climb out of a prefix route.
"""

import re

from zope.interface import implementer

from .errors import BadRequest
from .interfaces import IRouter

# RFC 3986 section 2.3: these may be percent-decoded without changing what a
# URI means (section 6.2.2.2).  Everything else stays encoded, with its hex
# digits upper-cased, so that "%2f" and "%2F" match the same routes.
_UNRESERVED = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)
_HEX = frozenset(b"0123456789ABCDEFabcdef")

# $0..$9 in a backend URL of a regex route stand for the groups of its match.
GROUP_REFERENCE = re.compile(rb"\$([0-9])")

# A regex route whose Location headers can be mapped back: "^", a literal
# path (letters, digits, "_~/-" and escaped "./-"), then one group taking the
# rest of the path.
_INFERABLE = re.compile(rb"\^((?:[A-Za-z0-9_~/-]|\\[./-])*)\((?:\.\*|\.\+)\)\$?")

# Each Router keeps the outcome of routing the (Host, target) pairs it has
# seen: clients ask for the same few targets again and again (a page and
# its assets, the polls of an application), and the routes of a Router
# never change (a reload builds a new one), so an outcome stays right.
# Bounded in entries (the cache starts over when full) and in target
# length, so that a client sending new targets each time costs memory for
# nothing.
ROUTE_CACHE_ENTRIES = 1024
ROUTE_CACHE_TARGET = 256

# What the cache holds for a pair it has not seen (None is an outcome).
_UNKNOWN = object()


def splitTarget(target):
    """
    Split a request target into its path and its query.

    @param target: the request target as received, such as C{b"/a/b?x=1"}.
    @type target: L{bytes}
    @return: C{(path, query)} where C{query} is L{None} when the target has
        no C{?} (an empty query C{b""} is kept, as Apache keeps it).
    """
    path, sep, query = target.partition(b"?")
    return path, (query if sep else None)


def _decodeUnreserved(path):
    """
    Decode the percent-encoded unreserved characters of C{path} and upper-case
    the hex digits of every other percent-encoding.

    @raise BadRequest: for a C{%} not followed by two hex digits.
    """
    if b"%" not in path:
        return path
    pieces = path.split(b"%")
    out = [pieces[0]]
    for piece in pieces[1:]:
        if len(piece) < 2 or piece[0] not in _HEX or piece[1] not in _HEX:
            raise BadRequest("invalid percent-encoding in the request path")
        value = int(piece[:2], 16)
        if value in _UNRESERVED:
            out.append(bytes((value,)) + piece[2:])
        else:
            out.append(b"%" + piece[:2].upper() + piece[2:])
    return b"".join(out)


def _removeDotSegments(path):
    """
    RFC 3986 section 5.2.4 for an absolute path: C{.} and C{..} segments are
    resolved, and C{..} never climbs above the root.
    """
    output = []
    for segment in path.split(b"/")[1:]:
        if segment == b"..":
            if output:
                output.pop()
        elif segment != b".":
            output.append(segment)
    # A trailing "." or ".." leaves a directory: keep its trailing slash.
    if path.endswith((b"/.", b"/..")):
        output.append(b"")
    return b"/" + b"/".join(output)


def normalizePath(path):
    """
    Normalize a request path for matching and forwarding.

    @param path: the path of the request target, without the query.
    @type path: L{bytes}
    @return: the normalized path, always starting with C{/}.
    @raise BadRequest: for a path that is not absolute or has a bad
        percent-encoding.
    """
    if not path.startswith(b"/"):
        raise BadRequest("the request path must start with '/'")
    path = _decodeUnreserved(path)
    if b"." in path:
        path = _removeDotSegments(path)
    return path


def hostOfHeader(host):
    """
    The lower-cased host name of a C{Host} header value, without its port.

    @param host: a C{Host} header value such as C{b"Example.com:8080"} or
        C{b"[::1]:80"}, or L{None}.
    @return: L{bytes}, empty when there is no host.
    """
    if not host:
        return b""
    host = host.strip().lower()
    if host.startswith(b"["):
        return host[: host.find(b"]") + 1]
    return host.partition(b":")[0]


def urlHost(host):
    """
    A host name or IP address as it is written in a URL or a C{Host}
    header: IPv6 addresses in brackets (RFC 3986 3.2.2).

    @param host: L{bytes} or L{str}, an IPv6 address without brackets,
        an IPv4 address or a name.
    @return: the same type as C{host}.
    """
    colon, left, right = (b":", b"[", b"]") if host.__class__ is bytes else (":", "[", "]")
    if colon in host and not host.startswith(left):
        return left + host + right
    return host


def hostMatches(patterns, host):
    """
    Whether a request host matches any of a route's host patterns.

    @param patterns: lower-cased names; C{"*.example.com"} matches any name
        ending in C{".example.com"} (one or more labels), not C{example.com}.
        An empty sequence matches every host.
    @param host: the result of L{hostOfHeader}.
    @rtype: L{bool}
    """
    if not patterns:
        return True
    for pattern in patterns:
        if pattern[:2] == b"*.":
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def prefixMatches(prefix, path):
    """
    Apache's ProxyPass rule for whether C{prefix} covers C{path}.

    A prefix ending in C{/} covers every path that starts with it.  A prefix
    without the trailing slash covers the path itself and the paths below it
    (C{/app} covers C{/app} and C{/app/x}, not C{/apple}).

    @type prefix: L{bytes}
    @type path: L{bytes}
    @rtype: L{bool}
    """
    if not path.startswith(prefix):
        return False
    if prefix.endswith(b"/") or len(path) == len(prefix):
        return True
    return path[len(prefix)] == 0x2F


def compileTemplate(template):
    """
    Split a backend URL of a regex route into literal pieces and group numbers.

    @param template: such as C{b"/app/$1?x=$2"}.
    @return: a L{tuple} of L{bytes} (literal) and L{int} (group number).
    """
    parts = []
    position = 0
    for reference in GROUP_REFERENCE.finditer(template):
        if reference.start() > position:
            parts.append(template[position : reference.start()])
        parts.append(int(reference.group(1)))
        position = reference.end()
    if position < len(template):
        parts.append(template[position:])
    return tuple(parts)


def expandTemplate(parts, match):
    """
    Fill a compiled template with the groups of a regular expression match.

    @param parts: the result of L{compileTemplate}.
    @param match: an L{re.Match} over bytes.
    @return: L{bytes}; a group that did not take part in the match is empty.
    """
    return b"".join(
        part if part.__class__ is bytes else (match.group(part) or b"")
        for part in parts
    )


def withQuery(target, query):
    """
    Pass a request's query string on to a backend target.

    @param target: the backend path, possibly with its own query.
    @param query: the request's query or L{None}.
    @return: C{target}, with C{query} appended (after C{&} when the target
        already has a query).
    """
    if query is None:
        return target
    if b"?" in target:
        return target + b"&" + query if query else target
    return target + b"?" + query


def backendTarget(route, path, query):
    """
    The backend request target for a request that C{route} matches.

    @param route: a L{proxyws.config.Route}.
    @param path: the normalized request path.
    @param query: the request query or L{None}.
    @return: the backend target (path and query) as L{bytes}, or L{None}
        when the route does not match C{path}.
    """
    if route.match is None:
        return prefixTarget(route, path, query)
    found = route.match.search(path)
    if found is None:
        return None
    return withQuery(expandTemplate(route.template, found), query)


def prefixTarget(route, path, query):
    """
    L{backendTarget} for a prefix route.
    """
    if not prefixMatches(route.prefix, path):
        return None
    target = route.backend.path + path[len(route.prefix) :]
    if target[:1] != b"/":
        target = b"/" + target
    return withQuery(target, query)


class RouteMatch:
    """
    The outcome of routing one request.

    @ivar route: the L{proxyws.config.Route} that matched.
    @ivar target: the request target to send to the backend.
    @ivar path: the normalized request path the route matched.
    @ivar match: the L{re.Match} of a C{match} route (its groups choose
        members of an upstream with C{hash = "match:N"}), or L{None}.
    @ivar api: the L{proxyws.apiroutes.APIRoute} when the route is one
        added through the API, else L{None}.
    """

    __slots__ = ("route", "target", "path", "match", "api")

    def __init__(self, route, target, path=None, match=None, api=None):
        self.route = route
        self.target = target
        self.path = path
        self.match = match
        self.api = api


@implementer(IRouter)
class Router:
    """
    First-match routing over a fixed table of routes, with virtual hosts.

    A request for a name of a C{[[host]]} (exact names before C{*.}
    wildcards) is matched against that host's routes first, then against
    the routes outside any host; a request for no host's name goes to the
    default host, if there is one, or to the routes outside any host.

    @ivar routes: the routes in the order they are tried.
    """

    def __init__(self, routes, hosts=()):
        """
        @param routes: a sequence of L{proxyws.config.Route}.
        @param hosts: a sequence of L{proxyws.config.Host}.
        """
        self.routes = tuple(routes)
        self.hosts = tuple(hosts)
        shared = tuple(r for r in self.routes if r.vhost is None)
        self._tables = {None: shared}
        for host in self.hosts:
            own = tuple(r for r in self.routes if r.vhost == host.index)
            self._tables[host.index] = own + shared
        self._exact = {}
        self._wildcards = []
        self._default = None
        for host in self.hosts:
            for name in host.names:
                if name[:2] == b"*.":
                    self._wildcards.append((name[1:], host.index))
                else:
                    self._exact[name] = host.index
            if host.default:
                self._default = host.index
        # The longest wildcard suffix wins.
        self._wildcards.sort(key=lambda entry: -len(entry[0]))
        self._outcomes = {}

    def hostFor(self, hostName):
        """
        The virtual host a request's host name selects.

        @param hostName: the result of L{hostOfHeader}.
        @return: the host's index, or L{None} for none (and no default).
        """
        index = self._exact.get(hostName)
        if index is not None:
            return index
        for suffix, index in self._wildcards:
            if hostName.endswith(suffix) and len(hostName) > len(suffix):
                return index
        return self._default

    def route(self, host, target):
        """
        Find the route for a request.

        @param host: the request's C{Host} header value, or L{None}.
        @param target: the request target as received.
        @return: a L{RouteMatch}, or L{None} when no route matches.
        @raise BadRequest: when the target cannot be normalized.
        """
        # Routing is a pure function of the two (see ROUTE_CACHE_ENTRIES):
        # a RouteMatch is never changed by its users, so one can serve
        # every request for the same target.
        key = (host, target)
        outcomes = self._outcomes
        found = outcomes.get(key, _UNKNOWN)
        if found is not _UNKNOWN:
            return found
        found = self._route(host, target)
        if len(target) <= ROUTE_CACHE_TARGET and (host is None or len(host) <= ROUTE_CACHE_TARGET):
            if len(outcomes) >= ROUTE_CACHE_ENTRIES:
                outcomes.clear()
            outcomes[key] = found
        return found

    def _route(self, host, target):
        """
        L{route}, worked out.
        """
        path, query = splitTarget(target)
        path = normalizePath(path)
        hostName = hostOfHeader(host)
        table = self._tables[self.hostFor(hostName) if self.hosts else None]
        for route in table:
            if route.hosts and not hostMatches(route.hosts, hostName):
                continue
            if route.match is None:
                backend = prefixTarget(route, path, query)
                if backend is not None:
                    return RouteMatch(route, backend, path)
                continue
            found = route.match.search(path)
            if found is not None:
                target = withQuery(expandTemplate(route.template, found), query)
                return RouteMatch(route, target, path, found)
        return None


def reverseMapping(prefix, match, backendPath):
    """
    The front and backend path prefixes for rewriting C{Location} headers
    (Apache's ProxyPassReverse), where they can be inferred.

    For a prefix route they are the route's path and the backend path.  For a
    regex route they are inferred when the expression starts with C{^}, a
    literal path, then one group that runs to the end, and the backend path
    ends with that group: C{'^/app/(.*)'} to C{/base/$1} maps C{/base/} back
    to C{/app/}.

    @param prefix: the route's C{path} (bytes) or L{None}.
    @param match: the route's C{match} pattern source (bytes) or L{None}.
    @param backendPath: the path part of the backend URL (template).
    @return: C{(backendPrefix, frontPrefix)} or L{None}.
    """
    if prefix is not None:
        if not backendPath and prefix.endswith(b"/"):
            # "http://b" on "/app/" sends "/app/x" to "/x": map "/" back,
            # or "/x" would become "/app//x" (and "//x" under "/").
            return b"/", prefix
        return backendPath, prefix
    literal = _INFERABLE.fullmatch(match)
    if literal is None:
        return None
    front = literal.group(1).replace(b"\\", b"")
    groups = GROUP_REFERENCE.findall(backendPath)
    if groups != [b"1"] or not backendPath.endswith(b"$1"):
        return None
    return backendPath[:-2], front
