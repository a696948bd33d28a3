"""
The frozen values a configuration file is loaded into (L{proxyws.config}).
Nothing else in proxyws sees the raw TOML.
"""

import hashlib
import os

import attr

@attr.s(frozen=True, slots=True)
class TLSSettings:
    """
    The TLS settings of a listener (or the certificate of a host).

    @ivar cert: path of the PEM certificate (and chain).
    @ivar key: path of the PEM private key.
    @ivar passphrase: the key's passphrase (bytes), or L{None}.
    @ivar minVersion: C{"1.2"} or C{"1.3"}.
    @ivar clientCert: C{"none"}, C{"optional"} or C{"required"}.
    """

    cert = attr.ib()
    key = attr.ib()
    passphrase = attr.ib(default=None, repr=False)
    passphraseFile = attr.ib(default=None)
    passphraseEnv = attr.ib(default=None)
    minVersion = attr.ib(default="1.2")
    ciphers = attr.ib(default=None)
    clientCA = attr.ib(default=None)
    clientCert = attr.ib(default="none")
    clientSubjectHeader = attr.ib(default=None)


@attr.s(frozen=True, slots=True)
class Redirect:
    """
    Answer plain HTTP with a redirect to https.
    """

    port = attr.ib(default=443)
    status = attr.ib(default=301)


@attr.s(frozen=True, slots=True)
class BackendTLS:
    """
    How an https:// or wss:// backend is checked.
    """

    ca = attr.ib(default=None)
    serverName = attr.ib(default=None)
    verify = attr.ib(default=True)
    cert = attr.ib(default=None)
    key = attr.ib(default=None)


@attr.s(frozen=True, slots=True)
class Access:
    """
    Access control of a host or route: address rules and Basic auth.

    @ivar rules: a L{proxyws.access.AccessRules}, or L{None}.
    @ivar htpasswd: the htpasswd file's path, or L{None}.
    @ivar realm: the Basic auth realm.
    """

    rules = attr.ib(default=None)
    htpasswd = attr.ib(default=None)
    realm = attr.ib(default="proxyws")
    keyPath = attr.ib(default="auth", eq=False)


@attr.s(frozen=True, slots=True)
class Host:
    """
    A C{[[host]]}: a virtual host.

    @ivar names: lower-cased names and C{*.} wildcards.
    @ivar tls: its own certificate (L{TLSSettings}) for SNI, or L{None}.
    """

    index = attr.ib()
    names = attr.ib()
    default = attr.ib()
    tls = attr.ib()
    # Plugins: its proxyws.plugins.PluginReferences.
    plugins = attr.ib(default=())


@attr.s(frozen=True, slots=True)
class Listener:
    """
    One address and port the proxy accepts connections on.

    @ivar tls: L{TLSSettings}, or L{None} for plain HTTP.
    """

    address = attr.ib()
    port = attr.ib()
    tls = attr.ib(default=None)
    redirect = attr.ib(default=None)
    hsts = attr.ib(default=None)
    proxyProtocol = attr.ib(default=False)
    maxConnections = attr.ib(default=0)


@attr.s(frozen=True, slots=True)
class Backend:
    """
    Where a route's requests go.

    @ivar url: the backend URL as written in the config.
    @ivar secure: whether connections use TLS (https and wss).
    @ivar host: host name or address literal (IPv6 without brackets).
    @ivar port: the port.
    @ivar path: the path (and query) part of the URL, a template with C{$N}
        for regex routes.
    @ivar httpScheme: C{b"http"} or C{b"https"}.
    @ivar wsScheme: C{b"ws"} or C{b"wss"}.
    @ivar hostHeader: the C{Host} header that names this backend.
    """

    url = attr.ib()
    secure = attr.ib()
    host = attr.ib()
    port = attr.ib()
    path = attr.ib()
    httpScheme = attr.ib()
    wsScheme = attr.ib()
    hostHeader = attr.ib()
    tls = attr.ib(default=None)

    @property
    def key(self):
        """
        What identifies a pool of connections to this backend.
        """
        if self.tls is not None:
            return (self.secure, self.host, self.port, self.tls)
        return (self.secure, self.host, self.port)

    def origin(self, scheme):
        """
        @param scheme: C{b"http"}, C{b"https"}, C{b"ws"} or C{b"wss"}.
        @return: C{scheme://host[:port]} as bytes.
        """
        return scheme + b"://" + self.hostHeader


@attr.s(frozen=True, slots=True)
class Route:
    """
    One C{[[route]]}: which requests it takes and where they go.

    @ivar index: its position in the file, from 0 (for messages).
    @ivar hosts: lower-cased host patterns; empty for every host.
    @ivar prefix: the C{path} prefix (bytes), or L{None} for a regex route.
    @ivar match: the compiled C{match} expression (bytes), or L{None}.
    @ivar template: the compiled backend path template of a regex route.
    @ivar backend: the L{Backend}; for an C{upstream} route, its first
        member's.
    @ivar reverse: C{(backendPathPrefix, frontPathPrefix)} for rewriting
        response headers, or L{None} when it cannot be inferred.
    @ivar upstream: the name of the C{[[upstream]]} that takes its requests,
        or L{None}.
    """

    index = attr.ib()
    hosts = attr.ib()
    prefix = attr.ib()
    match = attr.ib()
    template = attr.ib()
    backend = attr.ib()
    reverse = attr.ib()
    preserveHost = attr.ib()
    connectTimeout = attr.ib()
    responseTimeout = attr.ib()
    readTimeout = attr.ib()
    maxMessageSize = attr.ib(default=0)
    wsPingInterval = attr.ib(default=0.0)
    wsPingTimeout = attr.ib(default=30.0)
    wsIdleTimeout = attr.ib(default=0.0)
    allowedOrigins = attr.ib(default=())
    compression = attr.ib(default=True)
    wsBufferSize = attr.ib(default=65536)
    maxBodySize = attr.ib(default=0)
    vhost = attr.ib(default=None)
    access = attr.ib(default=None)
    redirect = attr.ib(default=None)
    upstream = attr.ib(default=None)
    # Plugins: its own proxyws.plugins.PluginReferences (those of [server]
    # and of its host apply too).
    plugins = attr.ib(default=())
    # The name given to it (its label in the metrics), or None.
    name = attr.ib(default=None)


@attr.s(frozen=True, slots=True)
class ServerSettings:
    """
    The C{[server]} table; attribute names are the keys in mixedCase.
    """

    accessLog = attr.ib()
    workers = attr.ib()
    clientTimeout = attr.ib()
    shutdownTimeout = attr.ib()
    connectTimeout = attr.ib()
    responseTimeout = attr.ib()
    readTimeout = attr.ib()
    backendKeepalive = attr.ib()
    backendIdleTimeout = attr.ib()
    backendMaxConnections = attr.ib()
    trustedProxies = attr.ib(default=())
    unknownHost = attr.ib(default=404)
    logLevel = attr.ib(default="info")
    # Plugins: the proxyws.plugins.PluginReferences of [server] plugins,
    # and the seconds a plugin's Deferred may take.
    plugins = attr.ib(default=())
    pluginTimeout = attr.ib(default=10.0)
    reloadGrace = attr.ib(default=60.0)
    headTimeout = attr.ib(default=60.0)
    bodyTimeout = attr.ib(default=60.0)
    maxRequestLine = attr.ib(default=8192)
    maxHeaderLine = attr.ib(default=8192)
    maxHeaderSize = attr.ib(default=32768)
    maxHeaders = attr.ib(default=100)
    maxConnectionsPerClient = attr.ib(default=0)
    # Seconds a websocket may stay open ([server] max_websocket_lifetime),
    # or 0 for no limit.
    maxWebsocketLifetime = attr.ib(default=0.0)


@attr.s(frozen=True, slots=True)
class DemoSettings:
    """
    The C{[demo]} table: where the bundled demo backend listens.
    """

    address = attr.ib()
    port = attr.ib()


@attr.s(frozen=True, slots=True)
class AdminSettings:
    """
    The C{[admin]} table: the admin listener and the store of the routes
    added through its API.

    @ivar token: the value of the environment variable C{tokenEnv} when the
        config was loaded, or L{None} when no token is required.
    @ivar routeStore: C{"memory"}, C{"file"} or C{"redis"}.
    @ivar routeStoreFile: the absolute path of the file store, or L{None}.
    @ivar activityInterval: seconds between two writes (or merges across
        instances) of the routes' last activity.
    """

    address = attr.ib()
    port = attr.ib()
    tokenEnv = attr.ib(default=None)
    token = attr.ib(default=None, repr=False)
    routeStore = attr.ib(default="memory")
    routeStoreFile = attr.ib(default=None)
    redisURL = attr.ib(default="redis://127.0.0.1:6379/0")
    redisKeyPrefix = attr.ib(default="proxyws")
    hostRouting = attr.ib(default=False)
    activityInterval = attr.ib(default=5.0)


@attr.s(frozen=True, slots=True)
class Config:
    """
    A whole configuration file.

    @ivar path: the file it came from.
    @ivar demo: L{DemoSettings} or L{None}.
    """

    path = attr.ib()
    server = attr.ib()
    listeners = attr.ib()
    routes = attr.ib()
    demo = attr.ib(default=None)
    hosts = attr.ib(default=())
    source = attr.ib(default="", repr=False, eq=False)
    # proxyws.upstream.UpstreamSettings, in file order.
    upstreams = attr.ib(default=())
    # The [admin] table's AdminSettings, or None.
    admin = attr.ib(default=None)


# ---------------------------------------------------------------------------
# [[upstream]] tables: the settings proxyws.upstream runs on.
# ---------------------------------------------------------------------------


@attr.s(frozen=True, slots=True)
class HashKey:
    """
    What the C{hash} policy hashes.

    @ivar source: C{"client"}, C{"header"}, C{"cookie"} or C{"match"}.
    @ivar name: the lower-cased header name or the cookie name (L{bytes}),
        the group number (L{int}), or L{None} for C{"client"}.
    """

    source = attr.ib(default="client")
    name = attr.ib(default=None)


@attr.s(frozen=True, slots=True)
class CookieSettings:
    """
    The affinity cookie that names a member.

    @ivar maxAge: seconds the browser keeps it; 0 for a session cookie.
    @ivar sameSite: C{"Lax"}, C{"Strict"} or C{"None"}.
    """

    name = attr.ib(default="proxyws_member")
    path = attr.ib(default="/")
    domain = attr.ib(default=None)
    secure = attr.ib(default=False)
    httpOnly = attr.ib(default=True)
    sameSite = attr.ib(default="Lax")
    maxAge = attr.ib(default=0)


@attr.s(frozen=True, slots=True)
class CheckSettings:
    """
    The active health check of an upstream's members.

    @ivar type: C{"http"} (a GET of C{path}) or C{"tcp"} (a plain connect).
    @ivar path: the request target of an HTTP check (L{bytes}).
    @ivar statuses: the statuses that pass, a L{frozenset}; L{None} for
        any of 200 to 399 (as HAProxy's C{option httpchk}).
    @ivar interval: seconds from the end of one check of a member to the
        start of the next.
    @ivar timeout: seconds a check may take, connect included.
    @ivar rise: consecutive passed checks that bring a down member up.
    @ivar fall: consecutive failed checks that take an up member down.
    """

    type = attr.ib(default="http")
    path = attr.ib(default=b"/")
    statuses = attr.ib(default=None)
    interval = attr.ib(default=5.0)
    timeout = attr.ib(default=2.0)
    rise = attr.ib(default=2)
    fall = attr.ib(default=3)

    def passes(self, status):
        """
        @param status: an HTTP status code.
        @return: whether a check answered with C{status} passes.
        """
        if self.statuses is None:
            return 200 <= status < 400
        return status in self.statuses


@attr.s(frozen=True, slots=True)
class MemberSettings:
    """
    One member of an upstream, as configured.

    @ivar name: its stable name: the configured C{name}, or one derived from
        its URL (L{derivedName}).  The affinity cookie and the hashing use
        it, so that every proxyws process with the same config agrees.
    @ivar url: the URL as written.
    @ivar weight: its share of new requests and sessions (1 to 1000).
    @ivar drain: takes no new sessions (see L{Upstream.choose}).
    @ivar backend: the L{proxyws.values.Backend}, built as a route's
        C{backend} is, with the TLS settings of the routes that use the
        upstream.
    @ivar template: the compiled path template (for C{match} routes:
        L{proxyws.routing.expandTemplate} fills it with the match).
    """

    name = attr.ib()
    url = attr.ib()
    backend = attr.ib()
    template = attr.ib()
    weight = attr.ib(default=1)
    drain = attr.ib(default=False)


@attr.s(frozen=True, slots=True)
class UpstreamSettings:
    """
    One C{[[upstream]]} table.

    @ivar index: its position among the C{[[upstream]]} tables, from 0.
    @ivar members: the L{MemberSettings}, in config order.
    @ivar policy: C{"round_robin"}, C{"least_conn"}, C{"random_two"} or
        C{"hash"}.
    @ivar hashKey: the L{HashKey} of the C{hash} policy.
    @ivar affinity: one of L{AFFINITIES}.
    @ivar cookie: the L{CookieSettings} (affinity C{cookie}, or C{sockjs}
        with a C{cookie} table), or L{None}.
    @ivar retries: how many other members a request that could not be sent
        may try.
    @ivar maxFails: failures within C{failTimeout} that take a member down
        (nginx's C{max_fails}); 0 turns passive checks off.
    @ivar failTimeout: the window of those failures and the time the member
        then stays down (nginx's C{fail_timeout}), in seconds.
    @ivar check: the L{CheckSettings}, or L{None} for no active checks.
    """

    index = attr.ib()
    name = attr.ib()
    members = attr.ib()
    policy = attr.ib(default="round_robin")
    hashKey = attr.ib(default=HashKey())
    affinity = attr.ib(default="none")
    cookie = attr.ib(default=None)
    retries = attr.ib(default=0)
    maxFails = attr.ib(default=1)
    failTimeout = attr.ib(default=10.0)
    check = attr.ib(default=None)
    # Plugins: with policy = { plugin = ... }, policy is "plugin:NAME" and
    # this its proxyws.plugins.PluginReference.
    policyPlugin = attr.ib(default=None)


def derivedName(url):
    """
    The name of a member configured without one: C{m-} and 10 hex digits
    of the SHA-256 of its URL, the same in every process and free of the
    member's address (it goes into a cookie).

    @param url: the member URL as written in the config.
    @rtype: L{str}
    """
    return "m-" + hashlib.sha256(url.encode("utf-8")).hexdigest()[:10]


# ---------------------------------------------------------------------------
# Plugins (proxyws.plugins).
# ---------------------------------------------------------------------------


@attr.s(frozen=True, slots=True)
class PluginReference:
    """
    A plugin named in the config: a table of a C{plugins} list, or an
    upstream's C{policy} table.

    @ivar name: the entry point's name.
    @ivar options: the rest of the table (a L{dict}).
    @ivar keyPath: where it is, such as C{"route[0].plugins[1]"}.
    @ivar filename: the config file that names it.
    @ivar nameKey: the key of the name in its table: C{"name"} in a
        C{plugins} list, C{"plugin"} in a C{policy}.
    """

    name = attr.ib()
    options = attr.ib(hash=False, repr=False)
    keyPath = attr.ib()
    filename = attr.ib(default="proxyws.toml", eq=False, hash=False)
    nameKey = attr.ib(default="name", eq=False, hash=False)

    @property
    def directory(self):
        """
        The config file's folder, which relative paths in the options are
        relative to.
        """
        return os.path.dirname(os.path.abspath(self.filename))

    @property
    def nameKeyPath(self):
        """
        The key path of its name, such as C{"route[0].plugins[1].name"}.
        """
        return "{}.{}".format(self.keyPath, self.nameKey)
