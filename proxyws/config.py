"""
The configuration file: TOML in, frozen values out.

L{parseConfig} turns the text of a file into a L{Config} and validates all of
it; L{loadConfig} reads the file and also checks what needs the file system
(log files, certificates).  Nothing else in proxyws sees the raw TOML.  Every
problem is a L{ConfigError} whose text names the file, the key, the bad value
and what was expected.

The schema is data, in L{proxyws.schema}; the values are in
L{proxyws.values} (both are re-exported here).
"""

import difflib
import ipaddress
import os
import re
import tomllib
from urllib.parse import urlsplit

import attr

from .errors import ConfigError
from .routing import GROUP_REFERENCE, compileTemplate, reverseMapping, urlHost
from .schema import (
    ACCESS_KEYS,
    ADMIN_KEYS,
    AUTH_KEYS,
    BACKEND_TLS_KEYS,
    DEMO_KEYS,
    HOST_KEYS,
    HOST_TLS_KEYS,
    LISTEN_KEYS,
    ROUTE_KEYS,
    SCHEMES,
    SERVER_KEYS,
    TLS_KEYS,
    TOP_KEYS,
)
from .schema import CHECK_KEYS, COOKIE_KEYS, MEMBER_KEYS, UPSTREAM_KEYS
from .values import (
    Access,
    AdminSettings,
    Backend,
    BackendTLS,
    CheckSettings,
    Config,
    CookieSettings,
    DemoSettings,
    HashKey,
    Host,
    Listener,
    MemberSettings,
    Redirect,
    Route,
    PluginReference,
    ServerSettings,
    TLSSettings,
    UpstreamSettings,
    derivedName,
)

__all__ = [
    "Access",
    "AdminSettings",
    "ADMIN_KEYS",
    "backendForURL",
    "Backend",
    "BackendTLS",
    "Config",
    "DemoSettings",
    "Host",
    "Listener",
    "Redirect",
    "Route",
    "ServerSettings",
    "TLSSettings",
    "ACCESS_KEYS",
    "AUTH_KEYS",
    "BACKEND_TLS_KEYS",
    "DEMO_KEYS",
    "HOST_KEYS",
    "HOST_TLS_KEYS",
    "LISTEN_KEYS",
    "ROUTE_KEYS",
    "SCHEMES",
    "SERVER_KEYS",
    "TLS_KEYS",
    "TOP_KEYS",
    "loadConfig",
    "parseConfig",
]

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


_HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?")


def _isAddress(text):
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


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
    if parts.scheme not in SCHEMES or not parts.hostname or port == 0:
        raise reader.error(keyPath, "{!r} {}".format(url, expected))
    if any(c <= " " or c == "\x7f" for c in url):
        raise reader.error(
            keyPath, "{!r} holds a space or a control character; percent-encode it".format(url)
        )

    if parts.username or parts.password or parts.fragment:
        raise reader.error(
            keyPath, "{!r} may not hold a user, password or #fragment".format(url)
        )
    if "$" in parts.netloc:
        raise reader.error(
            keyPath, "{!r}: $N may appear only in the path and query".format(url)
        )
    if not (_HOST_NAME.fullmatch(parts.hostname) or _isAddress(parts.hostname)):
        raise reader.error(
            keyPath, "{!r}: {!r} is not a host name or IP address".format(url, parts.hostname)
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
    named = urlHost(host)
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
    upstream = _routeUpstream(reader, values, keyPath, base)
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
        except (re.error, OverflowError, RecursionError) as e:
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
        upstream=upstream,
        plugins=_plugins(reader, values["plugins"], keyPath + ".plugins"),
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

            if not values["require_ip"]:
                raise reader.error(
                    keyPath + ".require_ip", "is empty: it would refuse every client"
                )

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
    return Access(rules=rules, htpasswd=htpasswd, realm=realm, keyPath=keyPath + ".auth")


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
    """
    What a host's routes inherit from it while they are parsed: its index
    and its access settings.
    """

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
    host = Host(
        index=index,
        names=values["names"],
        default=values["default"],
        tls=tls,
        plugins=_plugins(reader, values["plugins"], keyPath + ".plugins"),
    )
    return host, routes


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
    server = attr.evolve(server, plugins=_plugins(reader, server.plugins, "server.plugins"))
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
    reader.upstreams = _upstreams(reader, document.get("upstream", []))
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
        source=text,
        upstreams=_upstreamsWithTLS(reader),
        admin=_admin(reader, document, base),
    )


# [admin] ----------------------------------------------------------------

# Keys that only mean something with one kind of route store: giving them
# with another kind is an error rather than a setting silently ignored.
_STORE_KEYS = {
    "route_store_file": "file",
    "redis_url": "redis",
    "redis_key_prefix": "redis",
}


def _admin(reader, document, base, environ=None):
    """
    The C{[admin]} table, or L{None} when the config has none.

    The token is read from the environment here, so that a C{token_env}
    naming a variable that is not set stops start-up (and a reload) with a
    config error instead of leaving the API open.

    @param environ: the environment (default L{os.environ}).
    @return: an L{AdminSettings} or L{None}.
    """
    if "admin" not in document:
        return None
    table = reader.table(document["admin"], "admin")
    values = reader.settings(table, ADMIN_KEYS, "admin")
    reader.required(values, ["port"], "admin")
    for key, kind in _STORE_KEYS.items():
        if key in table and values["route_store"] != kind:
            raise reader.error(
                "admin." + key,
                "is used only with route_store = {!r} (route_store is {!r})".format(
                    kind, values["route_store"]
                ),
            )
    storeFile = values["route_store_file"]
    if values["route_store"] == "file":
        if not storeFile:
            raise reader.error(
                "admin.route_store_file",
                "is required with route_store = 'file': the JSON file routes are kept in",
            )
        storeFile = os.path.join(base, storeFile)
    token = None
    if values["token_env"] is not None:
        token = (os.environ if environ is None else environ).get(values["token_env"])
        if not token:
            raise reader.error(
                "admin.token_env",
                "the environment variable {!r} is not set (or empty); set it to the "
                "token API clients send, or remove token_env".format(values["token_env"]),
            )
    return AdminSettings(
        address=values["address"],
        port=values["port"],
        tokenEnv=values["token_env"],
        token=token,
        routeStore=values["route_store"],
        routeStoreFile=storeFile,
        redisURL=values["redis_url"],
        redisKeyPrefix=values["redis_key_prefix"],
        hostRouting=values["host_routing"],
        activityInterval=values["activity_interval"],
    )


def backendForURL(url):
    """
    Check a backend URL given at run time (the target of a route added
    through the API) as a config's C{backend} is checked.

    @param url: the URL text.
    @return: a L{Backend}; its C{path} is the URL's path without a trailing
        C{/} (C{b""} for none), to be put in front of the request path.
    @raise InvalidRoute: when it is not a URL proxyws can use.
    """
    from .errors import InvalidRoute

    if not isinstance(url, str):
        raise InvalidRoute("Must specify 'target' as string")
    try:
        backend = _backend(_Reader("API"), url, "target", None)
    except ConfigError as e:
        raise InvalidRoute("target: " + e.message) from None
    if b"?" in backend.path:
        raise InvalidRoute("target: {!r} may not hold a query".format(url))
    return attr.evolve(backend, path=backend.path.rstrip(b"/"))


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
    return checkedConfig(text, path)


def checkedConfig(text, path):
    """
    Parse and validate the text of a configuration file, including the
    files it names (what L{loadConfig} does once it has read the file).

    @raise ConfigError: for anything wrong, with one readable line.
    """
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


# ---------------------------------------------------------------------------
# [[upstream]] tables (proxyws.upstream).  They are parsed before the routes.
# A route with `upstream = "name"` is checked against the upstream here and
# then built as a route to the upstream's first member, whose Backend is the
# route's; the request path chooses the member for each request.  The
# members of one upstream differ only in host, port and settings, so the
# target a route computes from its own backend is right for every member.
# ---------------------------------------------------------------------------

_MEMBER = "a URL string or a table such as { url = 'http://10.0.0.1:3838/', weight = 2 }"


def _upstreams(reader, tables):
    """
    Every C{[[upstream]]} table.

    @return: a L{dict} of name to L{UpstreamSettings}, in file order.
    """
    found = {}
    # Upstream name -> (key path, BackendTLS) of the first route using it.
    reader.upstreamTLS = {}
    for index, table in enumerate(reader.tables(tables, "upstream")):
        upstream = _upstream(reader, index, table)
        if upstream.name in found:
            raise reader.error(
                "upstream[{}].name".format(index),
                "{!r} is already the name of upstream[{}]".format(
                    upstream.name, found[upstream.name].index
                ),
            )
        found[upstream.name] = upstream
    return found


def _upstream(reader, index, table):
    keyPath = "upstream[{}]".format(index)
    values = reader.settings(table, UPSTREAM_KEYS, keyPath)
    reader.required(values, ["name", "members"], keyPath)
    members = _members(reader, values["members"], keyPath + ".members")
    if values["hash"] is not None and values["policy"] != "hash":
        raise reader.error(
            keyPath + ".hash",
            "is used only with policy = 'hash' (the policy is {!r})".format(values["policy"]),
        )
    if values["cookie"] is not None and values["affinity"] == "none":
        raise reader.error(
            keyPath + ".cookie", "is used only with affinity = 'cookie' or 'sockjs'"
        )
    cookie = check = None
    if values["cookie"] is not None or values["affinity"] == "cookie":
        cookie = _cookie(reader, values["cookie"] or {}, keyPath + ".cookie")
    if values["check"] is not None:
        check = _check(reader, values["check"], keyPath + ".check")
    policy, policyPlugin = values["policy"], None
    if isinstance(policy, dict):
        policyPlugin = _pluginReference(reader, policy, keyPath + ".policy", "plugin")
        policy = "plugin:" + policyPlugin.name
    return UpstreamSettings(
        index=index,
        name=values["name"],
        members=members,
        policy=policy,
        policyPlugin=policyPlugin,
        hashKey=HashKey(*values["hash"]) if values["hash"] else HashKey(),
        affinity=values["affinity"],
        cookie=cookie,
        retries=len(members) - 1 if values["retries"] is None else values["retries"],
        maxFails=values["max_fails"],
        failTimeout=values["fail_timeout"],
        check=check,
    )


def _members(reader, value, keyPath):
    if not isinstance(value, list):
        raise reader.error(
            keyPath, "{!r} is not a list of members, each {}".format(value, _MEMBER)
        )
    if not value:
        raise reader.error(keyPath, "is empty: list at least one member")
    members = []
    for n, item in enumerate(value):
        where = "{}[{}]".format(keyPath, n)
        if isinstance(item, str):
            item, urlPath = {"url": item}, where
        elif isinstance(item, dict):
            urlPath = where + ".url"
        else:
            raise reader.error(where, "{!r} is not {}".format(item, _MEMBER))
        values = reader.settings(item, MEMBER_KEYS, where)
        reader.required(values, ["url"], where)
        # $0..$9 are allowed here and checked against each route's match.
        backend = _backend(reader, values["url"], urlPath, 9)
        member = MemberSettings(
            name=values["name"] or derivedName(values["url"]),
            url=values["url"],
            backend=backend,
            template=compileTemplate(backend.path),
            weight=values["weight"],
            drain=values["drain"],
        )
        _checkAlike(reader, members, member, where, urlPath)
        members.append(member)
    return tuple(members)


def _pathOf(url):
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def _checkAlike(reader, members, member, where, urlPath):
    """
    A new member differs from the ones before it in URL and name, and
    shares their scheme and path.
    """
    for n, other in enumerate(members):
        if other.url == member.url:
            raise reader.error(urlPath, "{!r} is already members[{}]".format(member.url, n))
        if other.name == member.name:
            raise reader.error(
                where + ".name", "{!r} is already the name of members[{}]".format(member.name, n)
            )
    if not members:
        return
    first = members[0].url
    scheme, firstScheme = urlsplit(member.url).scheme, urlsplit(first).scheme
    if scheme != firstScheme:
        raise reader.error(
            urlPath,
            "{!r} uses {} but members[0] uses {}: the members of one upstream "
            "share a scheme".format(member.url, scheme, firstScheme),
        )
    if _pathOf(member.url) != _pathOf(first):
        raise reader.error(
            urlPath,
            "{!r} has path {!r} but members[0] has {!r}: the members of one "
            "upstream differ only in host and port".format(
                member.url, _pathOf(member.url), _pathOf(first)
            ),
        )


def _cookie(reader, table, keyPath):
    values = reader.settings(reader.table(table, keyPath), COOKIE_KEYS, keyPath)
    if values["same_site"] == "None" and not values["secure"]:
        raise reader.error(
            keyPath + ".same_site", "'None' needs secure = true (browsers refuse it otherwise)"
        )
    return CookieSettings(
        name=values["name"],
        path=values["path"],
        domain=values["domain"],
        secure=values["secure"],
        httpOnly=values["http_only"],
        sameSite=values["same_site"],
        maxAge=values["max_age"],
    )


def _check(reader, table, keyPath):
    values = reader.settings(reader.table(table, keyPath), CHECK_KEYS, keyPath)
    if values["type"] == "tcp":
        for key in ("path", "status"):
            if values[key] is not None:
                raise reader.error(
                    keyPath + "." + key,
                    "is for type = 'http' checks; a 'tcp' check only connects",
                )
    return CheckSettings(
        type=values["type"],
        path=values["path"] or b"/",
        statuses=values["status"],
        interval=values["interval"],
        timeout=values["timeout"],
        rise=values["rise"],
        fall=values["fall"],
    )


def _routeUpstream(reader, values, keyPath, base):
    """
    Check a route's C{upstream} against the route, and make the route's
    C{backend} the upstream's first member.

    @param values: the route's settings; C{"backend"} is set here.
    @return: the upstream's name, or L{None} for a route with a backend.
    """
    name = values["upstream"]
    if name is None:
        return None
    if values["backend"] is not None:
        raise reader.error(keyPath, "needs exactly one of 'backend' and 'upstream'")
    upstreams = getattr(reader, "upstreams", {})
    if name not in upstreams:
        known = ", ".join(repr(n) for n in upstreams)
        raise reader.error(
            keyPath + ".upstream",
            "{!r} is not the name of an [[upstream]]; {}".format(
                name, "the known names are " + known if known else "there are none"
            ),
        )
    upstream = upstreams[name]
    _checkRouteGroups(reader, upstream, values, keyPath)
    _checkRoutePath(reader, upstream, values, keyPath)
    tls = None
    if values["backend_tls"] is not None:
        if not upstream.members[0].backend.secure:
            raise reader.error(
                keyPath + ".backend_tls",
                "the members of upstream {!r} do not use TLS (https:// or wss://)".format(name),
            )
        tls = _backendTLS(reader, values["backend_tls"], keyPath + ".backend_tls", base)
    first = reader.upstreamTLS.setdefault(name, (keyPath, tls))
    if first[1] != tls:
        raise reader.error(
            keyPath + ".backend_tls",
            "differs from that of {}, which uses upstream {!r} too: the routes "
            "of one upstream check its members' TLS the same way".format(first[0], name),
        )
    values["backend"] = upstream.members[0].url
    return name


def _checkRouteGroups(reader, upstream, values, keyPath):
    """
    The C{$N} of the members' path and a C{match:N} hash key name groups
    that the route's C{match} has.
    """
    if (values["path"] is None) == (values["match"] is None):
        return  # The route's own check says so.
    groups = None
    if values["match"] is not None:
        try:
            groups = re.compile(values["match"].encode("utf-8")).groups
        except (re.error, OverflowError, RecursionError):
            return  # Idem.
    used = [
        ("the members of upstream {!r} use ${}".format(upstream.name, n.decode()), int(n))
        for n in GROUP_REFERENCE.findall(upstream.members[0].backend.path)
    ]
    if upstream.hashKey.source == "match":
        number = upstream.hashKey.name
        used.append(("upstream {!r} hashes on match:{}".format(upstream.name, number), number))
    for what, number in used:
        if groups is None:
            raise reader.error(
                keyPath + ".upstream", "{} but only 'match' routes have groups".format(what)
            )
        if number > groups:
            raise reader.error(
                keyPath + ".upstream",
                "{} but 'match' has only {} group{}".format(
                    what, groups, "" if groups == 1 else "s"
                ),
            )


def _checkRoutePath(reader, upstream, values, keyPath):
    """
    Apache's ProxyPass rule for a prefix route and its members' path.
    """
    path, url = values["path"], upstream.members[0].url
    if values["match"] is not None or path is None or not path.startswith("/"):
        return  # The route's own checks say what is wrong.
    if urlsplit(url).path and path.endswith("/") != _pathOf(url).endswith("/"):
        raise reader.error(
            keyPath,
            "path {!r} and the path of the members of upstream {!r} ({!r}) must "
            "both end with '/' or both not (Apache ProxyPass rule)".format(
                path, upstream.name, _pathOf(url)
            ),
        )


def _upstreamsWithTLS(reader):
    """
    The upstreams, their members' backends carrying the C{backend_tls} of
    the routes that use them.
    """
    result = []
    for upstream in getattr(reader, "upstreams", {}).values():
        tls = reader.upstreamTLS.get(upstream.name, (None, None))[1]
        if tls is not None:
            members = tuple(
                attr.evolve(m, backend=attr.evolve(m.backend, tls=tls))
                for m in upstream.members
            )
            upstream = attr.evolve(upstream, members=members)
        result.append(upstream)
    return tuple(result)


# ---------------------------------------------------------------------------
# Plugins (proxyws.plugins).  A "plugins" list on [server], a [[host]] or a
# [[route]] names plugins by their entry point's name, each with its
# options; an upstream's policy may name one with "plugin".  Only the shape
# is checked here: proxyws.plugins.buildPlugins finds each plugin and has
# its factory check its options (at start, by `proxyws check` and at each
# reload), and reports unknown names and bad options as ConfigErrors.
# ---------------------------------------------------------------------------

_PLUGIN_TABLE = "a table such as { name = 'headers', set = { 'X-Frame-Options' = 'DENY' } }"


def _plugins(reader, value, keyPath):
    """
    The plugins of a C{plugins} list.

    @return: a L{tuple} of L{PluginReference}.
    """
    if not isinstance(value, (list, tuple)):
        raise reader.error(
            keyPath, "{!r} is not a list of plugins, each {}".format(value, _PLUGIN_TABLE)
        )
    return tuple(
        _pluginReference(reader, item, "{}[{}]".format(keyPath, n), "name")
        for n, item in enumerate(value)
    )


def _pluginReference(reader, table, keyPath, nameKey):
    """
    One plugin's table: its name (under C{nameKey}) and its options.
    """
    if not isinstance(table, dict):
        raise reader.error(keyPath, "{!r} is not {}".format(table, _PLUGIN_TABLE))
    name = table.get(nameKey)
    where = "{}.{}".format(keyPath, nameKey)
    if name is None:
        raise reader.error(where, "is required and missing: the name of an installed plugin")
    if not isinstance(name, str):
        raise reader.error(where, "{!r} is not a string: the name of an installed plugin".format(name))
    options = {key: value for key, value in table.items() if key != nameKey}
    return PluginReference(name, options, keyPath, reader.filename, nameKey)
