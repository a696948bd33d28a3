"""
Parsing a C{[[route]]} table: its C{path} or C{match}, its backend URL, the
TLS settings of the backend and the route's access control.

L{proxyws.config} calls L{parseRoute} for each route, at the top level and
in each C{[[host]]}; a problem is raised as a L{ConfigError} (or recorded and
L{proxyws.reader.Broken} raised) for the reader to collect.
"""

import ipaddress
import os
import re
from urllib.parse import urlsplit

import attr

from .patterns import backtrackingRepeat
from .pluginconfig import parsePlugins
from .reader import shown
from .routing import GROUP_REFERENCE, compileTemplate, reverseMapping, urlHost
from .schema import AUTH_KEYS, BACKEND_TLS_KEYS, ROUTE_KEYS, SCHEMES
from .values import Access, Backend, BackendTLS, Route

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
    expected = "{} is not a URL with scheme http, https, ws or wss".format(shown(url))
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise reader.error(keyPath, expected) from None
    if parts.scheme not in SCHEMES or not parts.hostname or port == 0:
        raise reader.error(keyPath, expected)
    if any(c <= " " or c == "\x7f" for c in url):
        raise reader.error(
            keyPath, "{} holds a space or a control character; percent-encode it".format(shown(url))
        )
    if parts.username or parts.password or parts.fragment:
        raise reader.error(
            keyPath, "{} may not hold a user, password or #fragment".format(shown(url))
        )
    if "$" in parts.netloc:
        raise reader.error(
            keyPath, "{}: $N may appear only in the path and query".format(shown(url))
        )
    if not (_HOST_NAME.fullmatch(parts.hostname) or _isAddress(parts.hostname)):
        raise reader.error(
            keyPath,
            "{}: {} is not a host name or IP address".format(shown(url), shown(parts.hostname)),
        )
    path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    path = path.encode("utf-8")
    _checkGroups(reader, url, path, keyPath, groups)
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
        raise reader.error(keyPath, expected) from None
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


def _checkGroups(reader, url, path, keyPath, groups):
    """
    Refuse a C{$N} in a backend's path that the route has no group for.
    """
    for number in GROUP_REFERENCE.findall(path):
        if groups is None:
            raise reader.error(
                keyPath,
                "{} uses ${} but only 'match' routes have groups".format(
                    shown(url), number.decode()
                ),
            )
        if int(number) > groups:
            raise reader.error(
                keyPath,
                "{} uses ${} but 'match' has only {} group{}".format(
                    shown(url), number.decode(), groups, "" if groups == 1 else "s"
                ),
            )


def _pattern(reader, text, keyPath):
    """
    Compile a route's C{match}, refusing an expression that can backtrack
    catastrophically (L{proxyws.patterns}).
    """
    try:
        pattern = re.compile(text.encode("utf-8"))
    except (re.error, OverflowError, RecursionError) as e:
        raise reader.error(
            keyPath, "{} is not a valid regular expression: {}".format(shown(text), e)
        ) from None
    try:
        construct = backtrackingRepeat(pattern.pattern)
    except ValueError as e:
        raise reader.error(
            keyPath,
            "{} cannot be checked for catastrophic backtracking: {}".format(shown(text), e),
        ) from None
    if construct is not None:
        raise reader.error(
            keyPath,
            "{} can take time exponential in the path's length: {} can match the "
            "same text in more than one way; make the inner repeat possessive "
            "(a++ rather than a+) or put it in an atomic group (?>...)".format(
                shown(text), shown(construct)
            ),
        )
    return pattern


def _prefixBackend(reader, values, keyPath):
    """
    The prefix and backend of a C{path} route.
    """
    if not values["path"].startswith("/"):
        raise reader.error(
            keyPath + ".path",
            "{} is not a path starting with '/'".format(shown(values["path"])),
        )
    prefix = values["path"].encode("utf-8")
    backend = _backend(reader, values["backend"], keyPath + ".backend", None)
    if not urlsplit(values["backend"]).path:
        # "http://b" with no path: "/app/x" on path "/app" goes to "/x".
        backend = attr.evolve(backend, path=b"")
    elif prefix.endswith(b"/") != backend.path.endswith(b"/"):
        raise reader.error(
            keyPath,
            "path {} and the path of backend {} must both end with '/' "
            "or both not (Apache ProxyPass rule)".format(
                shown(values["path"]), shown(values["backend"])
            ),
        )
    return prefix, backend


def parseRoute(reader, index, table, server, keyPath=None, host=None, base=""):
    """
    Parse and check one C{[[route]]} table.

    @param reader: the L{proxyws.reader.Reader} of the file.
    @param index: the route's number among all routes of the file.
    @param table: the table, as TOML gives it.
    @param server: the L{proxyws.values.ServerSettings}, whose timeouts are
        the route's defaults.
    @param keyPath: where the table is, C{"route[N]"} by default.
    @param host: what the route inherits from its C{[[host]]} (its C{index}
        and C{access}), or L{None}.
    @param base: the directory relative file names are resolved against.
    @return: a L{Route}.
    @raise ConfigError: for the first problem of the route.
    @raise proxyws.reader.Broken: when its keys had problems (recorded).
    """
    keyPath = keyPath or "route[{}]".format(index)
    values = reader.settings(
        table, ROUTE_KEYS, keyPath, required=[] if "upstream" in table else ["backend"]
    )
    from .upstreamconfig import routeUpstream

    upstream = routeUpstream(reader, values, keyPath, base)
    _checkName(reader, values["name"], keyPath)
    if (values["path"] is None) == (values["match"] is None):
        raise reader.error(keyPath, "needs exactly one of 'path' and 'match'")
    prefix = pattern = template = None
    if values["path"] is not None:
        prefix, backend = _prefixBackend(reader, values, keyPath)
    else:
        pattern = _pattern(reader, values["match"], keyPath + ".match")
        backend = _backend(reader, values["backend"], keyPath + ".backend", pattern.groups)
        template = compileTemplate(backend.path)
    if values["backend_tls"] is not None:
        if not backend.secure:
            raise reader.error(
                keyPath + ".backend_tls",
                "backend {} does not use TLS (https:// or wss://)".format(
                    shown(values["backend"])
                ),
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
        maxBodySize=values["max_body_size"],
        vhost=host.index if host is not None else None,
        access=parseAccess(reader, values, keyPath, base, host),
        redirect=values["redirect_https"],
        upstream=upstream,
        plugins=parsePlugins(reader, values["plugins"], keyPath + ".plugins"),
        name=values["name"],
    )


def _checkName(reader, name, keyPath):
    """
    A route's name is its own: two routes with one name would share their
    metrics.
    """
    if name is None:
        return
    names = reader.__dict__.setdefault("routeNames", {})
    if name in names:
        raise reader.error(
            keyPath + ".name", "{!r} is already the name of {}".format(name, names[name]))
    names[name] = keyPath


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


def parseAccess(reader, values, keyPath, base, host=None):
    """
    The access control of a host or route; a route without its own takes
    its host's.

    @param values: the table's settings (L{proxyws.schema.ACCESS_KEYS}).
    @param host: what a route inherits from its host, or L{None}.
    @return: an L{Access}, or L{None} when there is none.
    @raise ConfigError: for rules that cannot be used.
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
        auth = reader.settings(
            reader.table(values["auth"], where), AUTH_KEYS, where, required=["htpasswd"]
        )
        htpasswd, realm = os.path.join(base, auth["htpasswd"]), auth["realm"]
    inherited = host.access if host is not None else None
    if rules is None and htpasswd is None:
        return inherited
    if inherited is not None:
        rules = rules or inherited.rules
        if htpasswd is None:
            htpasswd, realm = inherited.htpasswd, inherited.realm
    return Access(rules=rules, htpasswd=htpasswd, realm=realm, keyPath=keyPath + ".auth")
