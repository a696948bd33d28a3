"""
The schema of the configuration file, as data: for each table, its keys,
the parser of each key's value and its default.

A key that is not in these tables is an error (with a did-you-mean
suggestion), and a key that is missing takes the default written here.
Defaults follow nginx where it has an equivalent.  L{proxyws.config} applies
them.
"""

import ipaddress
import math
import os
import re
from urllib.parse import urlsplit

from .logs import LEVELS
from .values import Redirect

# The parsers of the values a key may hold: each takes the value and returns
# the converted value, or raises ValueError with what was expected.


def _string(value):
    if not isinstance(value, str):
        raise ValueError("a string")
    return value


# A route's name, its label in the metrics: "none" and "api" are the labels
# of requests no route took and of the API's routes.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_RESERVED_NAMES = ("none", "api")


def _routeName(value):
    if not isinstance(value, str) or not _NAME.fullmatch(value) or value in _RESERVED_NAMES:
        raise ValueError(
            "a name of up to 64 letters, digits, '_', '.' and '-' that starts with a "
            "letter, other than 'none' and 'api'"
        )
    return value


def _boolean(value):
    if not isinstance(value, bool):
        raise ValueError("true or false")
    return value


def _seconds(minimum):
    """
    The parser of a number of seconds from C{minimum} to L{MAX_SECONDS}.
    """

    def seconds(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("a number of seconds")
        try:
            value = float(value)
        except OverflowError:
            value = math.inf
        if not (minimum <= value <= MAX_SECONDS):
            raise ValueError(
                "a number of seconds from {:g} to 1e9".format(minimum)
            )
        return value

    return seconds


def _secondsOrOff(minimum):
    """
    The parser of 0 (off) or a number of seconds from C{minimum} to
    L{MAX_SECONDS}.
    """

    def secondsOrOff(value):
        if value == 0 and not isinstance(value, bool):
            return 0.0
        try:
            return _seconds(minimum)(value)
        except ValueError as e:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise
            raise ValueError("0 (off) or " + e.args[0]) from None

    return secondsOrOff


# Longer than any timeout anyone means (31 years), short of the numbers the
# reactor cannot schedule.
MAX_SECONDS = 1e9

# The least number of seconds each kind of setting takes.  nginx and HAProxy
# take milliseconds without a floor; these floors keep out the values no
# deployment means (0.001 is a unit mix-up, 1e-300 an attack on the event
# loop) and name the range in the message:
# - a timer that repeats for every open connection (the websocket ping) at
#   least a second: 1e-300 sent one websocket 10,000 pings a second, and
#   browsers and nginx's examples ping every 20 to 60 s;
# - a timeout that bounds one wait (connecting, a response head, a silent
#   backend, a pong, an idle websocket) at least 100 ms: less than a round
#   trip to any real peer, it would fail healthy ones, and HAProxy's own
#   examples start at seconds;
# - a time something is kept for reuse or grace (an idle keep-alive client,
#   an idle backend connection, requests in flight at shutdown) at least a
#   second: below that, keep-alive and graceful stop do nothing (nginx's
#   keepalive_timeout is written in seconds).
PING_MINIMUM = 1.0
WAIT_MINIMUM = 0.1
KEEP_MINIMUM = 1.0


def _count(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("a whole number, 0 or more")
    return value


def _origins(value):
    if not isinstance(value, list) or not all(
        isinstance(o, str) and (_ORIGIN.fullmatch(o) or _HOST_PATTERN.fullmatch(o))
        for o in value
    ):
        raise ValueError(
            "a list of origins such as 'https://app.example.com' or host names "
            "such as '*.example.com'"
        )
    return tuple(o.lower().rstrip("/").encode("ascii") for o in value)


_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s]+/?", re.IGNORECASE)


def _workers(value):
    if value == "auto":
        return os.cpu_count() or 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 256:
        raise ValueError("a number of processes from 1 to 256, or 'auto'")
    return value


def _tlsVersion(value):
    if value in ("1.0", "1.1"):
        raise ValueError("'1.2' or '1.3' (TLS {} is obsolete and refused)".format(value))
    if value not in ("1.2", "1.3"):
        raise ValueError("'1.2' or '1.3'")
    return value


def _clientCert(value):
    if value not in ("none", "optional", "required"):
        raise ValueError("'none', 'optional' or 'required'")
    return value


def _stringList(value):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("a list of strings")
    return tuple(value)


def _redirect(value):
    if value is False:
        return None
    if value is True:
        return Redirect()
    if isinstance(value, dict) and set(value) <= {"port", "status"}:
        port = value.get("port", 443)
        status = value.get("status", 301)
        if _isPort(port) and status in (301, 302, 307, 308):
            return Redirect(port=port, status=status)
    raise ValueError(
        "true, or a table such as {port = 8443, status = 308} "
        "(status 301, 302, 307 or 308)"
    )


def _isPort(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


def _unknownHost(value):
    if value not in (404, 421):
        raise ValueError("404 or 421")
    return value


def _logLevel(value):
    if value not in LEVELS:
        raise ValueError("one of " + ", ".join(repr(level) for level in LEVELS))
    return value


def _networks(value):
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("a list of addresses or CIDRs such as '10.0.0.0/8'")
    try:
        return tuple(ipaddress.ip_network(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError("a list of addresses or CIDRs such as '10.0.0.0/8'") from None


def _headerText(value):
    if not isinstance(value, str) or not value or not all(" " <= c <= "~" for c in value):
        raise ValueError("printable ASCII text, as a header value holds")
    return value


def _bufferSize(value):
    if isinstance(value, bool) or not isinstance(value, int) or not 4096 <= value <= 16777216:
        raise ValueError("a number of bytes from 4096 to 16777216")
    return value


def _within(least, most, unit):
    """
    The parser of a whole number from C{least} to C{most} (of C{unit}).
    """

    def parse(value):
        if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
            raise ValueError("a number of {} from {} to {}".format(unit, least, most))
        return value

    return parse


def _port(value):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ValueError("a port number from 0 to 65535")
    return value


def _address(value):
    if not isinstance(value, str):
        raise ValueError("an IPv4 or IPv6 address such as '127.0.0.1' or '::'")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(
            "an IPv4 or IPv6 address such as '127.0.0.1' or '::'"
        ) from None


def _hosts(value):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(
        isinstance(name, str) and _HOST_PATTERN.fullmatch(name) for name in value
    ):
        raise ValueError(
            "a host name such as 'example.com' or '*.example.com', or a list of them"
        )
    return tuple(name.lower().encode("ascii") for name in value)


_HOST_PATTERN = re.compile(r"(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?|\[[0-9A-Fa-f:.]+\]")

# Settings of [server], with their defaults.  Each timeout is in seconds.
SERVER_KEYS = {
    "access_log": (_string, "-"),  # a file, or "-" for standard output
    "workers": (_workers, 1),  # processes; "auto" = one per core
    "trusted_proxies": (_networks, ()),  # X-Forwarded-For believed from these
    "unknown_host": (_unknownHost, 404),  # with [[host]]s and no default
    "log_level": (_logLevel, "info"),  # least severe message written
    "client_timeout": (_seconds(KEEP_MINIMUM), 75.0),  # idle keep-alive client (nginx 75s)
    "shutdown_timeout": (_seconds(KEEP_MINIMUM), 30.0),  # in-flight requests on SIGTERM
    "reload_grace": (_seconds(WAIT_MINIMUM), 60.0),  # websockets of removed routes, after a reload
    # A websocket open longer is closed with 1001 on both legs; 0 = no limit.
    "max_websocket_lifetime": (_secondsOrOff(KEEP_MINIMUM), 0.0),
    "connect_timeout": (_seconds(WAIT_MINIMUM), 60.0),  # default for routes (nginx 60s)
    "response_timeout": (_seconds(WAIT_MINIMUM), 60.0),  # wait for backend response head
    "read_timeout": (_seconds(WAIT_MINIMUM), 60.0),  # backend silent while sending a body
    "backend_keepalive": (_count, 32),  # idle connections kept per backend
    "backend_idle_timeout": (_seconds(KEEP_MINIMUM), 60.0),  # idle backend connection life
    "backend_max_connections": (_count, 0),  # per backend; 0 = no limit
    # What a client may send (nginx client_header_timeout,
    # client_body_timeout, large_client_header_buffers 4 8k; Apache
    # LimitRequestFields 100).  A head too slow gets 408, too large 414/431.
    "head_timeout": (_seconds(WAIT_MINIMUM), 60.0),  # from accept or first byte
    "body_timeout": (_seconds(WAIT_MINIMUM), 60.0),  # between two reads of a body
    "max_request_line": (_within(256, 1048576, "bytes"), 8192),
    "max_header_line": (_within(256, 1048576, "bytes"), 8192),
    "max_header_size": (_within(256, 16777216, "bytes"), 32768),  # all fields
    "max_headers": (_within(1, 10000, "fields"), 100),
    "max_connections_per_client": (_count, 0),  # per client address; 0 = no limit
}

# Settings of each [[listen]]; None marks a required key.
LISTEN_KEYS = {
    "address": (_address, None),
    "port": (_port, None),
    "tls": (None, None),  # a table of TLS_KEYS; checked on its own
    "redirect_https": (_redirect, None),  # answer everything with a redirect
    "hsts": (_headerText, None),  # Strict-Transport-Security value
    "proxy_protocol": (_boolean, False),  # PROXY protocol v1/v2 first
    "max_connections": (_count, 0),  # open at once; beyond, accepting waits
}

TLS_KEYS = {
    "cert": (_string, None),  # PEM: the certificate, then its chain
    "key": (_string, None),  # PEM: the private key
    "key_passphrase_file": (_string, None),  # for an encrypted key
    "key_passphrase_env": (_string, None),  # ... or from the environment
    "min_version": (_tlsVersion, "1.2"),  # "1.2" or "1.3"
    "ciphers": (_string, None),  # OpenSSL cipher list (TLS 1.2)
    "client_ca": (_string, None),  # PEM CAs for client certificates
    "client_cert": (_clientCert, "none"),  # "none", "optional", "required"
    "client_subject_header": (_string, None),  # pass the verified subject on
}

# A [[host]]'s own certificate (for SNI) takes only these.
HOST_TLS_KEYS = {
    key: TLS_KEYS[key] for key in ("cert", "key", "key_passphrase_file", "key_passphrase_env")
}

# Backend TLS of a route (https:// and wss://).
BACKEND_TLS_KEYS = {
    "ca": (_string, None),  # PEM CAs; default: the system's
    "server_name": (_string, None),  # name checked and sent as SNI
    "verify": (_boolean, True),  # false: no check at all (warned at start)
    "cert": (_string, None),  # client certificate for mutual TLS
    "key": (_string, None),
}

AUTH_KEYS = {
    "htpasswd": (_string, None),  # Apache htpasswd file
    "realm": (_headerText, "proxyws"),
}

# Access control, on a [[host]] or a [[route]] (a route's own win).
ACCESS_KEYS = {
    "order": (_string, None),  # "allow,deny" or "deny,allow" (Apache 2.2)
    "allow": (_stringList, None),  # addresses, CIDRs or "all"
    "deny": (_stringList, None),
    "require_ip": (_stringList, None),  # Apache 2.4 "Require ip"
    "auth": (None, None),  # a table of AUTH_KEYS
}

HOST_KEYS = {
    "names": (_hosts, None),
    "default": (_boolean, False),  # takes requests for unknown hosts
    "tls": (None, None),  # HOST_TLS_KEYS, for SNI
    "route": (None, None),  # [[host.route]] tables
    **ACCESS_KEYS,
}

# Settings of each [[route]]: exactly one of path and match; the timeouts
# default to the [server] values of the same names.
ROUTE_KEYS = {
    "name": (_routeName, None),  # the route's label in the metrics and status
    "path": (_string, None),
    "match": (_string, None),
    "backend": (_string, None),
    "host": (_hosts, ()),
    "preserve_host": (_boolean, False),
    "connect_timeout": (_seconds(WAIT_MINIMUM), None),
    "response_timeout": (_seconds(WAIT_MINIMUM), None),
    "read_timeout": (_seconds(WAIT_MINIMUM), None),
    # websockets
    "max_message_size": (_count, 0),  # bytes; larger messages close 1009
    "ws_ping_interval": (_secondsOrOff(PING_MINIMUM), 0.0),  # proxy pings on each leg; 0 off
    "ws_ping_timeout": (_seconds(WAIT_MINIMUM), 30.0),  # a pong must come within this
    "ws_idle_timeout": (_secondsOrOff(WAIT_MINIMUM), 0.0),  # no message either way; 0 off
    "allowed_origins": (_origins, ()),  # empty: every Origin
    "compression": (_boolean, True),  # permessage-deflate on both legs
    "max_body_size": (_count, 0),  # bytes of a request body; larger get 413
    "ws_buffer_size": (_bufferSize, 65536),  # bytes queued per leg before
    # the other leg's reading pauses (and read at once)
    "redirect_https": (_redirect, None),  # plain HTTP requests are redirected
    "backend_tls": (None, None),  # BACKEND_TLS_KEYS
    "upstream": (_string, None),  # an [[upstream]]'s name, instead of backend
    **ACCESS_KEYS,
}

DEMO_KEYS = {
    "address": (_address, "127.0.0.1"),
    "port": (_port, 8081),
}


# [admin]: the admin listener and the run-time routes served through it.


def _routeStore(value):
    if value not in ROUTE_STORES:
        raise ValueError("one of " + ", ".join(repr(kind) for kind in ROUTE_STORES))
    return value


def _redisURL(value):
    expected = "a URL such as 'redis://127.0.0.1:6379/0' (redis://[:password@]host[:port][/db])"
    if not isinstance(value, str):
        raise ValueError(expected)
    try:
        parts = urlsplit(value)
        parts.port
    except ValueError:
        raise ValueError(expected) from None
    database = parts.path.strip("/")
    if parts.scheme != "redis" or not parts.hostname or (database and not database.isdigit()):
        raise ValueError(expected)
    return value


def _environmentName(value):
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError("the name of an environment variable, such as 'CONFIGPROXY_AUTH_TOKEN'")
    return value


def _keyPrefix(value):
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", value):
        raise ValueError("1 to 64 letters, digits or '_.:-'")
    return value


# The kinds of route store: where routes added through the API are kept.
ROUTE_STORES = ("memory", "file", "redis")

# Settings of [admin]; None marks a required key.  route_store_file is
# required with route_store = "file", and the redis_* keys belong to
# route_store = "redis" (config.py checks both).
ADMIN_KEYS = {
    "address": (_address, "127.0.0.1"),
    "port": (_port, None),
    "token_env": (_environmentName, None),  # variable holding the API token
    "route_store": (_routeStore, "memory"),  # "memory", "file" or "redis"
    "route_store_file": (_string, None),  # JSON file of route_store "file"
    "redis_url": (_redisURL, "redis://127.0.0.1:6379/0"),
    "redis_key_prefix": (_keyPrefix, "proxyws"),  # names of keys and channel
    "host_routing": (_boolean, False),  # API prefixes start with a host name
    "activity_interval": (_seconds(WAIT_MINIMUM), 5.0),  # last_activity written/merged
}

TOP_KEYS = ("server", "listen", "route", "host", "demo", "upstream", "admin")

# Backend URL schemes, with the default port and the scheme used for plain
# HTTP and for websocket upgrades to the same backend.
SCHEMES = {
    "http": (80, b"http", b"ws"),
    "https": (443, b"https", b"wss"),
    "ws": (80, b"http", b"ws"),
    "wss": (443, b"https", b"wss"),
}


# ---------------------------------------------------------------------------
# [[upstream]] tables (proxyws.upstream).  The parsers return plain values;
# proxyws.config builds the settings values from them.
# ---------------------------------------------------------------------------

# Names of upstreams and members: they go into log lines, metric labels and
# the affinity cookie's value, so they are short and need no quoting.
_NAME = re.compile(r"[A-Za-z0-9_.~-]{1,64}")

# A cookie name: an RFC 6265 token.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

# The balancing policies (proxyws.balancing.POLICIES has one per name).
POLICIES = ("round_robin", "least_conn", "random_two", "hash")


def _name(value):
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError("a name of 1 to 64 letters, digits and '_.~-'")
    return value


def _oneOf(*allowed):
    def parse(value):
        if value not in allowed:
            raise ValueError("one of " + ", ".join(repr(a) for a in allowed))
        return value

    return parse


def _hashKey(value):
    """
    C{"client"}, C{"header:NAME"}, C{"cookie:NAME"} or C{"match:N"}.

    @return: C{(source, name)}: the lower-cased header name or the cookie
        name as bytes, the group number, or L{None} for the client address.
    """
    expected = (
        "'client', 'header:NAME', 'cookie:NAME' or 'match:N' (N a group "
        "number from 0 to 9)"
    )
    if value == "client":
        return ("client", None)
    source, sep, name = value.partition(":") if isinstance(value, str) else ("", "", "")
    if source in ("header", "cookie") and _TOKEN.fullmatch(name):
        name = name.encode("ascii")
        return (source, name.lower() if source == "header" else name)
    if source == "match" and len(name) == 1 and name.isdigit():
        return (source, int(name))
    raise ValueError(expected)


def _weight(value):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise ValueError("a whole number from 1 to 1000")
    return value


def _tries(value):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise ValueError("a whole number from 1 to 100")
    return value


def _cookieName(value):
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise ValueError("a cookie name (letters, digits and !#$%&'*+.^_`|~-)")
    return value


def _cookieText(value):
    if not isinstance(value, str) or not value or not all(
        "!" <= c <= "~" and c != ";" for c in value
    ):
        raise ValueError("printable ASCII text without spaces or ';'")
    return value


def _statuses(value):
    if not isinstance(value, list):
        value = [value]
    if not value or not all(
        isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 599 for v in value
    ):
        raise ValueError("an HTTP status from 100 to 599, or a list of them")
    return frozenset(value)


def _checkPath(value):
    if not isinstance(value, str) or not value.startswith("/") or not all(
        "!" <= c <= "~" for c in value
    ):
        raise ValueError("a path starting with '/', in printable ASCII without spaces")
    return value.encode("ascii")


# Settings of each [[upstream]]; None marks a required key.  max_fails and
# fail_timeout are nginx's, with nginx's defaults.
UPSTREAM_KEYS = {
    "name": (_name, None),
    "members": (None, None),  # URL strings or MEMBER_KEYS tables
    "policy": (_oneOf(*POLICIES), "round_robin"),
    "hash": (_hashKey, None),  # what policy = "hash" hashes; default client
    "affinity": (_oneOf("none", "sockjs", "cookie"), "none"),
    "cookie": (None, None),  # COOKIE_KEYS
    "retries": (_count, None),  # default: members - 1
    "max_fails": (_count, 1),  # failures within fail_timeout; 0: never down
    "fail_timeout": (_seconds(WAIT_MINIMUM), 10.0),  # the window, and the time down
    "check": (None, None),  # CHECK_KEYS: active checks
}

MEMBER_KEYS = {
    "url": (_string, None),
    "weight": (_weight, 1),
    "name": (_name, None),  # default: derived from the URL
    "drain": (_boolean, False),  # no new sessions (Apache's +N)
}

# The affinity cookie: a session cookie for the whole site by default.
COOKIE_KEYS = {
    "name": (_cookieName, "proxyws_member"),
    "path": (_cookieText, "/"),
    "domain": (_cookieText, None),
    "secure": (_boolean, False),
    "http_only": (_boolean, True),
    "same_site": (_oneOf("Lax", "Strict", "None"), "Lax"),
    "max_age": (_count, 0),  # seconds; 0: until the browser closes
}

# Active checks, with HAProxy's rise and fall counts.
CHECK_KEYS = {
    "type": (_oneOf("http", "tcp"), "http"),
    "path": (_checkPath, None),  # http only; default "/"
    "status": (_statuses, None),  # http only; default 200 to 399
    "interval": (_seconds(WAIT_MINIMUM), 5.0),
    "timeout": (_seconds(WAIT_MINIMUM), 2.0),
    "rise": (_tries, 2),
    "fall": (_tries, 3),
}


# ---------------------------------------------------------------------------
# Plugins (proxyws.plugins): a "plugins" list of tables on [server], each
# [[host]] and each [[route]] (each table a plugin's name and its options,
# checked by proxyws.config and then by the plugin's own factory), and how
# long a plugin's Deferred may take.  An upstream's policy may be a plugin's:
# policy = { plugin = "name", ...options }.
# ---------------------------------------------------------------------------

PLUGIN_SERVER_KEYS = {
    "plugins": (None, ()),  # tables { name = "...", ...options }
    "plugin_timeout": (_seconds(WAIT_MINIMUM), 10.0),  # a plugin's Deferred, at most
}
SERVER_KEYS.update(PLUGIN_SERVER_KEYS)
HOST_KEYS["plugins"] = (None, ())
ROUTE_KEYS["plugins"] = (None, ())


def _policy(value):
    if isinstance(value, dict):
        return value  # a plugin's policy, read by proxyws.config
    return _oneOf(*POLICIES)(value)


UPSTREAM_KEYS["policy"] = (_policy, "round_robin")
