"""
The configuration file: TOML in, frozen values out.

L{parseConfig} turns the text of a file into a L{Config} and validates all of
it; L{loadConfig} reads the file and also checks what needs the file system
(log files, certificates).  Nothing else in proxyws sees the raw TOML.  Every
problem is a L{ConfigError} whose text names the file, the key, the bad value
and what was expected.

The tables below are the whole schema: a key that is not in them is an
error (with a did-you-mean suggestion), and a key that is missing takes the
default written here.  Defaults follow nginx where it has an equivalent.
"""

import difflib
import ipaddress
import math
import os
import re
import tomllib
from urllib.parse import urlsplit

import attr

from .errors import ConfigError
from .routing import GROUP_REFERENCE, compileTemplate, reverseMapping

# The parsers of the values a key may hold: each takes the value and returns
# the converted value, or raises ValueError with what was expected.


def _string(value):
    if not isinstance(value, str):
        raise ValueError("a string")
    return value


def _boolean(value):
    if not isinstance(value, bool):
        raise ValueError("true or false")
    return value


def _seconds(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("a number of seconds")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError("a number of seconds greater than 0")
    return float(value)


def _count(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("a whole number, 0 or more")
    return value


def _secondsOrOff(value):
    if value == 0 and not isinstance(value, bool):
        return 0.0
    return _seconds(value)


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


def _networks(value):
    if not isinstance(value, list):
        raise ValueError("a list of addresses or CIDRs such as '10.0.0.0/8'")
    try:
        return tuple(ipaddress.ip_network(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError("a list of addresses or CIDRs such as '10.0.0.0/8'") from None


def _bufferSize(value):
    if isinstance(value, bool) or not isinstance(value, int) or not 4096 <= value <= 16777216:
        raise ValueError("a number of bytes from 4096 to 16777216")
    return value


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
    "client_timeout": (_seconds, 75.0),  # idle keep-alive client (nginx 75s)
    "shutdown_timeout": (_seconds, 30.0),  # in-flight requests on SIGTERM
    "connect_timeout": (_seconds, 60.0),  # default for routes (nginx 60s)
    "response_timeout": (_seconds, 60.0),  # wait for backend response head
    "read_timeout": (_seconds, 60.0),  # backend silent while sending a body
    "backend_keepalive": (_count, 32),  # idle connections kept per backend
    "backend_idle_timeout": (_seconds, 60.0),  # idle backend connection life
    "backend_max_connections": (_count, 0),  # per backend; 0 = no limit
}

# Settings of each [[listen]]; None marks a required key.
LISTEN_KEYS = {
    "address": (_address, None),
    "port": (_port, None),
    "tls": (None, None),  # a table of TLS_KEYS; checked on its own
    "redirect_https": (_redirect, None),  # answer everything with a redirect
    "hsts": (_string, None),  # Strict-Transport-Security value
    "proxy_protocol": (_boolean, False),  # PROXY protocol v1/v2 first
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
    "realm": (_string, "proxyws"),
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
    "path": (_string, None),
    "match": (_string, None),
    "backend": (_string, None),
    "host": (_hosts, ()),
    "preserve_host": (_boolean, False),
    "connect_timeout": (_seconds, None),
    "response_timeout": (_seconds, None),
    "read_timeout": (_seconds, None),
    # websockets
    "max_message_size": (_count, 0),  # bytes; larger messages close 1009
    "ws_ping_interval": (_secondsOrOff, 0.0),  # proxy pings on each leg; 0 off
    "ws_ping_timeout": (_seconds, 30.0),  # a pong must come within this
    "ws_idle_timeout": (_secondsOrOff, 0.0),  # no message either way; 0 off
    "allowed_origins": (_origins, ()),  # empty: every Origin
    "compression": (_boolean, True),  # permessage-deflate on both legs
    "ws_buffer_size": (_bufferSize, 65536),  # bytes queued per leg before
    # the other leg's reading pauses (and read at once)
    "redirect_https": (_redirect, None),  # plain HTTP requests are redirected
    "backend_tls": (None, None),  # BACKEND_TLS_KEYS
    **ACCESS_KEYS,
}

DEMO_KEYS = {
    "address": (_address, "127.0.0.1"),
    "port": (_port, 8081),
}

TOP_KEYS = ("server", "listen", "route", "host", "demo")

# Backend URL schemes, with the default port and the scheme used for plain
# HTTP and for websocket upgrades to the same backend.
SCHEMES = {
    "http": (80, b"http", b"ws"),
    "https": (443, b"https", b"wss"),
    "ws": (80, b"http", b"ws"),
    "wss": (443, b"https", b"wss"),
}


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
    @ivar backend: the L{Backend}.
    @ivar reverse: C{(backendPathPrefix, frontPathPrefix)} for rewriting
        response headers, or L{None} when it cannot be inferred.
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
    vhost = attr.ib(default=None)
    access = attr.ib(default=None)
    redirect = attr.ib(default=None)


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


@attr.s(frozen=True, slots=True)
class DemoSettings:
    """
    The C{[demo]} table: where the bundled demo backend listens.
    """

    address = attr.ib()
    port = attr.ib()


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


def _camel(key):
    head, *rest = key.split("_")
    return head + "".join(word.capitalize() for word in rest)


class _Reader:
    """
    Validation of one file, remembering its name for the messages.
    """

    def __init__(self, filename):
        self.filename = filename

    def error(self, keyPath, message):
        return ConfigError(self.filename, keyPath, message)

    def table(self, value, keyPath):
        if not isinstance(value, dict):
            raise self.error(keyPath, "{!r} is not a table".format(value))
        return value

    def tables(self, value, keyPath):
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(
                keyPath, "must be written as [[{}]] tables".format(keyPath)
            )
        return value

    def unknown(self, table, known, keyPath):
        for key in table:
            if key not in known:
                where = "{}.{}".format(keyPath, key) if keyPath else key
                close = difflib.get_close_matches(key, known, n=1)
                hint = " (did you mean {!r}?)".format(close[0]) if close else ""
                raise self.error(
                    where,
                    "unknown key{}; known keys here are {}".format(
                        hint, ", ".join(sorted(known))
                    ),
                )

    def settings(self, table, schema, keyPath, defaults=None):
        """
        Check C{table} against C{schema} and return the converted values by
        key, with defaults filled in.
        """
        self.unknown(table, schema, keyPath)
        values = {}
        for key, (parse, default) in schema.items():
            where = "{}.{}".format(keyPath, key)
            if key not in table:
                values[key] = (defaults or {}).get(key, default)
                continue
            if parse is None:
                values[key] = table[key]
                continue
            try:
                values[key] = parse(table[key])
            except ValueError as e:
                raise self.error(
                    where, "{!r} is not {}".format(table[key], e.args[0])
                ) from None
        return values

    def required(self, values, keys, keyPath):
        for key in keys:
            if values[key] is None:
                raise self.error(
                    "{}.{}".format(keyPath, key), "is required and missing"
                )


def _backend(reader, url, keyPath, groups):
    """
    Parse and check a backend URL.

    @param groups: the number of groups of the route's expression, or
        L{None} for a prefix route (where C{$N} is not allowed).
    """
    expected = "is not a URL with scheme http, https, ws or wss"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise reader.error(keyPath, "{!r} {}".format(url, expected)) from None
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise reader.error(keyPath, "{!r} {}".format(url, expected))
    if parts.username or parts.password or parts.fragment:
        raise reader.error(
            keyPath, "{!r} may not hold a user, password or #fragment".format(url)
        )
    if "$" in parts.netloc:
        raise reader.error(
            keyPath, "{!r}: $N may appear only in the path and query".format(url)
        )
    path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    path = path.encode("utf-8")
    for number in GROUP_REFERENCE.findall(path):
        if groups is None:
            raise reader.error(
                keyPath,
                "{!r} uses ${} but only 'match' routes have groups".format(
                    url, number.decode()
                ),
            )
        if int(number) > groups:
            raise reader.error(
                keyPath,
                "{!r} uses ${} but 'match' has only {} group{}".format(
                    url, number.decode(), groups, "" if groups == 1 else "s"
                ),
            )
    defaultPort, httpScheme, wsScheme = SCHEMES[parts.scheme]
    port = defaultPort if port is None else port
    host = parts.hostname
    named = "[" + host + "]" if ":" in host else host
    if port != defaultPort:
        named = "{}:{}".format(named, port)
    try:
        hostHeader = named.encode("idna")
    except UnicodeError:
        # An empty or over-long label ("a..b"): idna refuses it.
        raise reader.error(keyPath, "{!r} {}".format(url, expected)) from None
    return Backend(
        url=url,
        secure=httpScheme == b"https",
        host=host,
        port=port,
        path=path,
        httpScheme=httpScheme,
        wsScheme=wsScheme,
        hostHeader=hostHeader,
    )


def _route(reader, index, table, server, keyPath=None, host=None, base=""):
    keyPath = keyPath or "route[{}]".format(index)
    values = reader.settings(table, ROUTE_KEYS, keyPath)
    reader.required(values, ["backend"], keyPath)
    if (values["path"] is None) == (values["match"] is None):
        raise reader.error(keyPath, "needs exactly one of 'path' and 'match'")
    prefix = pattern = template = None
    if values["path"] is not None:
        if not values["path"].startswith("/"):
            raise reader.error(
                keyPath + ".path",
                "{!r} is not a path starting with '/'".format(values["path"]),
            )
        prefix = values["path"].encode("utf-8")
        backend = _backend(reader, values["backend"], keyPath + ".backend", None)
        if not urlsplit(values["backend"]).path:
            # "http://b" with no path: "/app/x" on path "/app" goes to "/x".
            backend = attr.evolve(backend, path=b"")
        elif prefix.endswith(b"/") != backend.path.endswith(b"/"):
            raise reader.error(
                keyPath,
                "path {!r} and the path of backend {!r} must both end with '/' "
                "or both not (Apache ProxyPass rule)".format(
                    values["path"], values["backend"]
                ),
            )
    else:
        try:
            pattern = re.compile(values["match"].encode("utf-8"))
        except re.error as e:
            raise reader.error(
                keyPath + ".match",
                "{!r} is not a valid regular expression: {}".format(
                    values["match"], e
                ),
            ) from None
        backend = _backend(
            reader, values["backend"], keyPath + ".backend", pattern.groups
        )
        template = compileTemplate(backend.path)
    if values["backend_tls"] is not None:
        if not backend.secure:
            raise reader.error(
                keyPath + ".backend_tls",
                "backend {!r} does not use TLS (https:// or wss://)".format(values["backend"]),
            )
        backend = attr.evolve(
            backend,
            tls=_backendTLS(reader, values["backend_tls"], keyPath + ".backend_tls", base),
        )
    return Route(
        index=index,
        hosts=values["host"],
        prefix=prefix,
        match=pattern,
        template=template,
        backend=backend,
        reverse=reverseMapping(prefix, pattern and pattern.pattern, backend.path),
        preserveHost=values["preserve_host"],
        connectTimeout=values["connect_timeout"] or server.connectTimeout,
        responseTimeout=values["response_timeout"] or server.responseTimeout,
        readTimeout=values["read_timeout"] or server.readTimeout,
        maxMessageSize=values["max_message_size"],
        wsPingInterval=values["ws_ping_interval"],
        wsPingTimeout=values["ws_ping_timeout"],
        wsIdleTimeout=values["ws_idle_timeout"],
        allowedOrigins=values["allowed_origins"],
        compression=values["compression"],
        wsBufferSize=values["ws_buffer_size"],
        vhost=host.index if host is not None else None,
        access=_access(reader, values, keyPath, base, host),
        redirect=values["redirect_https"],
    )


def _tls(reader, table, keyPath, base, keys=TLS_KEYS):
    """
    A C{tls} table: L{TLSSettings} with paths resolved against C{base}.
    """
    values = reader.settings(reader.table(table, keyPath), keys, keyPath)
    values = {key: values.get(key, TLS_KEYS[key][1]) for key in TLS_KEYS}
    reader.required(values, ["cert", "key"], keyPath)
    if values["key_passphrase_file"] and values["key_passphrase_env"]:
        raise reader.error(keyPath, "give key_passphrase_file or key_passphrase_env, not both")
    if values["client_cert"] != "none" and not values["client_ca"]:
        raise reader.error(
            keyPath + ".client_cert",
            "{!r} needs client_ca, the CAs client certificates are checked against".format(
                values["client_cert"]
            ),
        )
    path = lambda name: os.path.join(base, name) if name else None
    return TLSSettings(
        cert=path(values["cert"]),
        key=path(values["key"]),
        passphraseFile=path(values["key_passphrase_file"]),
        passphraseEnv=values["key_passphrase_env"],
        minVersion=values["min_version"],
        ciphers=values["ciphers"],
        clientCA=path(values["client_ca"]),
        clientCert=values["client_cert"],
        clientSubjectHeader=values["client_subject_header"],
    )


def _backendTLS(reader, table, keyPath, base):
    if table is None:
        return None
    values = reader.settings(reader.table(table, keyPath), BACKEND_TLS_KEYS, keyPath)
    if bool(values["cert"]) != bool(values["key"]):
        raise reader.error(keyPath, "a client certificate needs both cert and key")
    path = lambda name: os.path.join(base, name) if name else None
    return BackendTLS(
        ca=path(values["ca"]),
        serverName=values["server_name"],
        verify=values["verify"],
        cert=path(values["cert"]),
        key=path(values["key"]),
    )


def _access(reader, values, keyPath, base, host=None):
    """
    The access control of a host or route; a route without its own takes
    its host's.
    """
    rules = None
    try:
        if values["require_ip"] is not None:
            from .access import parseRequire

            if values["order"] or values["allow"] or values["deny"]:
                raise reader.error(keyPath, "use require_ip or order/allow/deny, not both")
            rules = parseRequire(list(values["require_ip"]), keyPath=keyPath)
        elif values["order"] or values["allow"] or values["deny"]:
            from .access import parseRules

            # Apache's default order is "Deny,Allow".
            rules = parseRules(
                values["order"] or "deny,allow",
                list(values["allow"] or ()),
                list(values["deny"] or ()),
                keyPath=keyPath,
            )
    except ValueError as e:
        raise reader.error(getattr(e, "keyPath", keyPath), getattr(e, "message", str(e))) from None
    htpasswd, realm = None, "proxyws"
    if values["auth"] is not None:
        where = keyPath + ".auth"
        auth = reader.settings(reader.table(values["auth"], where), AUTH_KEYS, where)
        reader.required(auth, ["htpasswd"], where)
        htpasswd, realm = os.path.join(base, auth["htpasswd"]), auth["realm"]
    inherited = host.access if host is not None else None
    if rules is None and htpasswd is None:
        return inherited
    if inherited is not None:
        rules = rules or inherited.rules
        if htpasswd is None:
            htpasswd, realm = inherited.htpasswd, inherited.realm
    return Access(rules=rules, htpasswd=htpasswd, realm=realm)


def _listener(reader, index, table, base):
    keyPath = "listen[{}]".format(index)
    values = reader.settings(table, LISTEN_KEYS, keyPath)
    reader.required(values, ["address", "port"], keyPath)
    tls = None
    if values["tls"] is not None:
        tls = _tls(reader, values["tls"], keyPath + ".tls", base)
    return Listener(
        address=values["address"],
        port=values["port"],
        tls=tls,
        redirect=values["redirect_https"],
        hsts=values["hsts"],
        proxyProtocol=values["proxy_protocol"],
    )


@attr.s(frozen=True, slots=True)
class _HostParse:
    index = attr.ib()
    access = attr.ib()


def _host(reader, index, table, server, base, firstRoute):
    """
    A C{[[host]]} and its routes (numbered from C{firstRoute}).

    @return: C{(Host, routes)}.
    """
    keyPath = "host[{}]".format(index)
    values = reader.settings(table, HOST_KEYS, keyPath)
    reader.required(values, ["names"], keyPath)
    tls = None
    if values["tls"] is not None:
        tls = _tls(reader, values["tls"], keyPath + ".tls", base, keys=HOST_TLS_KEYS)
    parsed = _HostParse(index=index, access=_access(reader, values, keyPath, base))
    routes = tuple(
        _route(
            reader,
            firstRoute + n,
            t,
            server,
            keyPath="{}.route[{}]".format(keyPath, n),
            host=parsed,
            base=base,
        )
        for n, t in enumerate(reader.tables(values["route"] or [], keyPath + ".route"))
    )
    return Host(index=index, names=values["names"], default=values["default"], tls=tls), routes


def parseConfig(text, filename="proxyws.toml"):
    """
    Parse and validate the text of a configuration file.

    This does no I/O: file paths in the config are resolved against the
    directory of C{filename} but not opened (see L{loadConfig}).

    @param text: the TOML text.
    @type text: L{str}
    @param filename: the file's name, used in messages and to resolve
        relative paths.
    @return: a L{Config}.
    @raise ConfigError: for anything wrong, with one readable line.
    """
    reader = _Reader(filename)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise reader.error(None, "not valid TOML: {}".format(e)) from None
    reader.unknown(document, TOP_KEYS, "")
    server = reader.settings(
        reader.table(document.get("server", {}), "server"), SERVER_KEYS, "server"
    )
    server = ServerSettings(**{_camel(k): v for k, v in server.items()})
    base = os.path.dirname(os.path.abspath(filename))
    if server.accessLog != "-":
        server = attr.evolve(server, accessLog=os.path.join(base, server.accessLog))
    listeners = [
        _listener(reader, i, t, base)
        for i, t in enumerate(reader.tables(document.get("listen", []), "listen"))
    ]
    if not listeners:
        raise reader.error("listen", "at least one [[listen]] table is required")
    _checkDistinct(reader, listeners)
    routes = [
        _route(reader, i, t, server, base=base)
        for i, t in enumerate(reader.tables(document.get("route", []), "route"))
    ]
    hosts = []
    for i, t in enumerate(reader.tables(document.get("host", []), "host")):
        host, hostRoutes = _host(reader, i, t, server, base, len(routes))
        hosts.append(host)
        routes.extend(hostRoutes)
    _checkHosts(reader, hosts)
    routes = tuple(routes)
    demo = None
    if "demo" in document:
        demo = DemoSettings(
            **reader.settings(reader.table(document["demo"], "demo"), DEMO_KEYS, "demo")
        )
    return Config(
        path=filename,
        server=server,
        listeners=tuple(listeners),
        routes=routes,
        demo=demo,
        hosts=tuple(hosts),
    )


def _checkHosts(reader, hosts):
    seen = {}
    defaults = [host.index for host in hosts if host.default]
    if len(defaults) > 1:
        raise reader.error(
            "host[{}].default".format(defaults[1]),
            "only one [[host]] may be the default; host[{}] is already".format(defaults[0]),
        )
    for host in hosts:
        for name in host.names:
            if name in seen:
                raise reader.error(
                    "host[{}].names".format(host.index),
                    "{!r} is already a name of host[{}]".format(name.decode(), seen[name]),
                )
            seen[name] = host.index


def _checkDistinct(reader, listeners):
    seen = {}
    for index, listener in enumerate(listeners):
        where = (listener.address, listener.port)
        if listener.port and where in seen:
            raise reader.error(
                "listen[{}]".format(index),
                "{} port {} is already used by listen[{}]".format(
                    listener.address, listener.port, seen[where]
                ),
            )
        seen[where] = index


def loadConfig(path):
    """
    Read, parse and validate a configuration file, including the files it
    names: the access log must be writable and TLS files readable.

    @param path: the file's path.
    @return: a L{Config}.
    @raise ConfigError: for anything wrong, with one readable line.
    """
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, None, "cannot read the file: {}".format(_reason(e)))
    config = parseConfig(text, path)
    _checkFiles(config)
    return config


def _reason(error):
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


def _checkFiles(config):
    if config.server.accessLog != "-":
        try:
            os.close(os.open(config.server.accessLog, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
        except OSError as e:
            raise ConfigError(
                config.path,
                "server.access_log",
                "cannot open {!r} for appending: {}".format(
                    config.server.accessLog, _reason(e)
                ),
            ) from None
    for index, listener in enumerate(config.listeners):
        if listener.tls is None:
            continue
        for key in ("cert", "key"):
            name = getattr(listener.tls, key)
            if not os.access(name, os.R_OK):
                raise ConfigError(
                    config.path,
                    "listen[{}].tls.{}".format(index, key),
                    "cannot read {!r}: {}".format(
                        name, "no such file" if not os.path.exists(name) else "permission denied"
                    ),
                )
