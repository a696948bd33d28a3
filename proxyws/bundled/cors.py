"""
The C{cors} plugin: Cross-Origin Resource Sharing for a route's plain HTTP
requests, as the Fetch standard describes it and the usual nginx and Apache
recipes do it::

    plugins = [{ name = "cors", origins = ["https://app.example.com"],
                 credentials = true, expose_headers = ["X-Total"] }]

A preflight (C{OPTIONS} with C{Origin} and C{Access-Control-Request-Method})
is answered by the proxy: 204 with the C{Access-Control-Allow-*} fields when
the origin, the method and the headers asked for are allowed, else 403; the
backend never sees it.  Other requests from an allowed origin go to the
backend, and their responses get C{Access-Control-Allow-Origin} (and
C{-Credentials}, C{-Expose-Headers}) and C{Vary: Origin}.  Put it before an
authenticator in a route's C{plugins}: browsers send preflights without
credentials.  Websocket upgrades are left alone (browsers do not use CORS for
them; see the route's C{allowed_origins}).
"""

import re

import attr
from zope.interface import implementer

from ..errors import PluginOptionError
from ..interfaces import IRequestFilter, IResponseFilter
from ..pluginvalues import Response

# The default methods a preflight may ask for (those of the Express "cors"
# package), and the default max age of a preflight's answer (browsers cap
# it: Chromium at 2 hours).
DEFAULT_METHODS = ("GET", "HEAD", "PUT", "PATCH", "POST", "DELETE")
DEFAULT_MAX_AGE = 600

# An origin: scheme, host (a "*." wildcard allowed), optional port.
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://(\*\.)?[a-z0-9_.-]+(:[0-9]+)?|\*")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# What request.state holds for the response filter: the allowed origin.
_STATE = "cors.origin"


@attr.s(frozen=True, slots=True)
class CORSPolicy:
    """
    Who may call a route from another origin, and how.

    @ivar origins: exact origins (lower-cased L{bytes}); C{b"*"} allows any.
    @ivar wildcards: C{(scheme, domain suffix)} of C{"https://*.x.com"}.
    @ivar methods: upper-cased methods a preflight may ask for.
    @ivar headers: lower-cased request headers a preflight may ask for, or
        L{None} for whichever it asks for.
    """

    origins = attr.ib()
    wildcards = attr.ib()
    methods = attr.ib()
    headers = attr.ib()
    exposeHeaders = attr.ib(default=())
    credentials = attr.ib(default=False)
    maxAge = attr.ib(default=DEFAULT_MAX_AGE)
    preflightStatus = attr.ib(default=204)

    def allows(self, origin):
        """
        @param origin: an C{Origin} header value.
        @return: whether C{origin} may call the route.
        """
        origin = origin.lower()
        if b"*" in self.origins or origin in self.origins:
            return True
        scheme, _, host = origin.partition(b"://")
        host = host.partition(b":")[0]
        return any(
            scheme == wantedScheme and host.endswith(suffix) and len(host) > len(suffix)
            for wantedScheme, suffix in self.wildcards
        )

    def allowOrigin(self, origin):
        """
        @return: the C{Access-Control-Allow-Origin} value for C{origin}: a
            literal C{*} only when any origin may call without credentials.
        """
        if b"*" in self.origins and not self.credentials:
            return b"*"
        return origin


def _single(headers, name):
    values = headers.getRawHeaders(name)
    return values[0] if values and len(values) == 1 else None


@implementer(IRequestFilter, IResponseFilter)
class CORS:
    """
    Answers preflights and marks cross-origin responses.
    """

    def __init__(self, policy):
        """
        @param policy: a L{CORSPolicy}.
        """
        self.policy = policy

    def filterRequest(self, request):
        """
        Answer a preflight; note an allowed origin for the response.
        """
        headers = request.headers
        origin = _single(headers, b"Origin")
        if origin is None or request.webSocket:
            return None
        asked = _single(headers, b"Access-Control-Request-Method")
        if request.method == b"OPTIONS" and asked is not None:
            return self._preflight(origin, asked, headers)
        if self.policy.allows(origin):
            request.state[_STATE] = origin
        return None

    def _preflight(self, origin, asked, headers):
        policy = self.policy
        wanted = [
            token.strip().lower()
            for value in headers.getRawHeaders(b"Access-Control-Request-Headers") or ()
            for token in value.split(b",")
            if token.strip()
        ]
        refused = None
        if not policy.allows(origin):
            refused = "origin not allowed"
        elif asked.upper() not in policy.methods:
            refused = "method not allowed"
        elif policy.headers is not None and not set(wanted) <= policy.headers:
            refused = "request headers not allowed"
        vary = ("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
        if refused is not None:
            return Response.text(403, "CORS preflight refused: {}\n".format(refused), (vary,))
        fields = [
            ("Access-Control-Allow-Origin", policy.allowOrigin(origin)),
            ("Access-Control-Allow-Methods", b", ".join(sorted(policy.methods))),
            ("Access-Control-Max-Age", str(policy.maxAge)),
            vary,
        ]
        if wanted:
            allowed = wanted if policy.headers is None else sorted(policy.headers)
            fields.append(("Access-Control-Allow-Headers", b", ".join(allowed)))
        if policy.credentials:
            fields.append(("Access-Control-Allow-Credentials", "true"))
        return Response(policy.preflightStatus, b"", fields)

    def filterResponse(self, request, response):
        """
        Mark the response to an allowed cross-origin request.
        """
        origin = request.state.get(_STATE)
        if origin is None:
            return
        policy = self.policy
        headers = response.headers
        allowed = policy.allowOrigin(origin)
        headers.setRawHeaders(b"Access-Control-Allow-Origin", [allowed])
        if policy.credentials:
            headers.setRawHeaders(b"Access-Control-Allow-Credentials", [b"true"])
        if policy.exposeHeaders:
            headers.setRawHeaders(
                b"Access-Control-Expose-Headers", [b", ".join(policy.exposeHeaders)]
            )
        if allowed != b"*":
            vary = b", ".join(headers.getRawHeaders(b"Vary", []))
            if b"origin" not in vary.lower():
                headers.setRawHeaders(b"Vary", [vary + b", Origin" if vary else b"Origin"])


def _origins(options):
    origins = options.takeStrings("origins")
    exact, wildcards = set(), []
    for n, origin in enumerate(origins):
        lowered = origin.lower().rstrip("/")
        if not _ORIGIN.fullmatch(lowered):
            raise PluginOptionError(
                "origins[{}]".format(n),
                "{!r} is not an origin such as 'https://app.example.com', "
                "'https://*.example.com' or '*'".format(origin),
            )
        scheme, _, host = lowered.partition("://")
        if host.startswith("*."):
            wildcards.append((scheme.encode("ascii"), host[1:].split(":")[0].encode("ascii")))
        else:
            exact.add(lowered.encode("ascii"))
    if not origins:
        raise PluginOptionError("origins", "is empty: list the origins that may call this route")
    return frozenset(exact), tuple(wildcards)


def _tokens(options, key, default, transform):
    values = options.takeStrings(key, default)
    for n, value in enumerate(values):
        if not _TOKEN.fullmatch(value):
            raise PluginOptionError(
                "{}[{}]".format(key, n), "{!r} is not a method or header name".format(value)
            )
    return frozenset(transform(v).encode("ascii") for v in values)


def corsPlugin(options):
    """
    The C{cors} plugin's factory.

    @param options: a L{proxyws.plugins.PluginOptions}: C{origins}
        (required), C{methods}, C{headers}, C{expose_headers},
        C{credentials}, C{max_age}, C{preflight_status}.
    @return: a L{CORS}.
    @raise PluginOptionError: for options it cannot use.
    """
    options.checkKeys(
        "origins", "methods", "headers", "expose_headers", "credentials", "max_age",
        "preflight_status",
    )
    exact, wildcards = _origins(options)
    headers = None
    if "headers" in options:
        headers = _tokens(options, "headers", (), str.lower)
    status = options.takeNumber("preflight_status", 204, integer=True)
    if status not in (200, 204):
        raise PluginOptionError("preflight_status", "{!r} is not 200 or 204".format(status))
    policy = CORSPolicy(
        origins=exact,
        wildcards=wildcards,
        methods=_tokens(options, "methods", DEFAULT_METHODS, str.upper),
        headers=headers,
        exposeHeaders=tuple(sorted(_tokens(options, "expose_headers", (), str))),
        credentials=options.takeBoolean("credentials", False),
        maxAge=options.takeNumber("max_age", DEFAULT_MAX_AGE, integer=True),
        preflightStatus=status,
    )
    return CORS(policy)
