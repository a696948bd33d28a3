"""
The configuration file: TOML in, frozen values out.

L{parseConfig} turns the text of a file into a L{Config} and validates all of
it; L{loadConfig} reads the file and also checks what needs the file system
(log files, certificates); L{checkConfig} runs the start-time checks that
load what those files hold (TLS contexts, htpasswd files); L{loadAndCheck} is
all three, what start-up and C{proxyws check} run.  Nothing else in proxyws
sees the raw TOML.

Every problem of a file is found, not only the first: each table is checked
on its own, and a table with a problem is left out of the checks across
tables.  They are raised together as one L{ConfigProblems}, whose text is
the first problem's line and whose C{problems} lists each, in file order.
Every problem names the file, the key, the bad value and what was expected.

The schema is data, in L{proxyws.schema}; the values are in
L{proxyws.values} (both are re-exported here).
"""

import os
import tomllib

import attr

from .errors import ConfigError, ConfigProblems
from .reader import Reader, fileOrder, oneLine, shown
from .pluginconfig import parsePlugins
from .routeconfig import _backend, parseAccess, parseRoute
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
from .upstreamconfig import parseUpstreams, upstreamsWithTLS
from .values import (
    Access,
    AdminSettings,
    Backend,
    BackendTLS,
    Config,
    DemoSettings,
    Host,
    Listener,
    Redirect,
    Route,
    ServerSettings,
    TLSSettings,
)

__all__ = [
    "Access",
    "AdminSettings",
    "ADMIN_KEYS",
    "backendForURL",
    "Backend",
    "BackendTLS",
    "Config",
    "ConfigProblems",
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
    "checkConfig",
    "checkedConfig",
    "loadAndCheck",
    "loadConfig",
    "parseConfig",
    "problemsOf",
]


def problemsOf(error):
    """
    The problems a L{ConfigError} stands for.

    @return: its C{problems}, or a list of the error itself for one that
        has none (such as a port that cannot be bound).
    """
    return list(getattr(error, "problems", [error]))


def _camel(key):
    head, *rest = key.split("_")
    return head + "".join(word.capitalize() for word in rest)


# A listener whose table has problems keeps its place (messages name
# listeners by their place) but is skipped by every check after parsing.
_BROKEN_LISTENER = Listener(address=None, port=None)


def _tls(reader, table, keyPath, base, keys=TLS_KEYS):
    """
    A C{tls} table: L{TLSSettings} with paths resolved against C{base}.
    """
    values = reader.settings(
        reader.table(table, keyPath), keys, keyPath, required=["cert", "key"]
    )
    values = {key: values.get(key, TLS_KEYS[key][1]) for key in TLS_KEYS}
    if values["key_passphrase_file"] and values["key_passphrase_env"]:
        raise reader.error(keyPath, "give key_passphrase_file or key_passphrase_env, not both")
    if values["client_cert"] != "none" and not values["client_ca"]:
        raise reader.error(
            keyPath + ".client_cert",
            "{} needs client_ca, the CAs client certificates are checked against".format(
                shown(values["client_cert"])
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


def _listener(reader, index, table, base):
    keyPath = "listen[{}]".format(index)
    values = reader.settings(table, LISTEN_KEYS, keyPath, required=["address", "port"])
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
        maxConnections=values["max_connections"],
    )


@attr.s(frozen=True, slots=True)
class _HostParse:
    """
    What a host's routes inherit from it while they are parsed: its index
    and its access settings.
    """

    index = attr.ib()
    access = attr.ib()


def _hostItself(reader, index, table, base):
    """
    A C{[[host]]} without its routes.

    @return: C{(Host, _HostParse)}.
    """
    keyPath = "host[{}]".format(index)
    values = reader.settings(table, HOST_KEYS, keyPath, required=["names"])
    tls = None
    if values["tls"] is not None:
        tls = _tls(reader, values["tls"], keyPath + ".tls", base, keys=HOST_TLS_KEYS)
    parsed = _HostParse(index=index, access=parseAccess(reader, values, keyPath, base))
    host = Host(
        index=index,
        names=values["names"],
        default=values["default"],
        tls=tls,
        plugins=parsePlugins(reader, values["plugins"], keyPath + ".plugins"),
    )
    return host, parsed


def _host(reader, index, table, server, base, firstRoute):
    """
    A C{[[host]]} and its routes (numbered from C{firstRoute}), each
    checked on its own: the routes of a host with a problem are still
    checked.

    @return: C{(Host or None, the routes without problems, the number of
        the next route)}.
    """
    keyPath = "host[{}]".format(index)
    ok, parsed = reader.attempt(_hostItself, reader, index, table, base)
    host, inherited = parsed if ok else (None, _HostParse(index=index, access=None))
    _, tables = reader.attempt(reader.tables, table.get("route") or [], keyPath + ".route")
    routes = []
    for n, routeTable in enumerate(tables or ()):
        ok, route = reader.attempt(
            parseRoute,
            reader,
            firstRoute + n,
            routeTable,
            server,
            keyPath="{}.route[{}]".format(keyPath, n),
            host=inherited,
            base=base,
        )
        if ok:
            routes.append(route)
    return host, routes, firstRoute + len(tables or ())


def _server(reader, document, base):
    """
    The C{[server]} table; its defaults when it has a problem.
    """
    ok, values = reader.attempt(
        lambda: reader.settings(
            reader.table(document.get("server", {}), "server"), SERVER_KEYS, "server"
        )
    )
    if not ok:
        values = {key: default for key, (_, default) in SERVER_KEYS.items()}
    server = ServerSettings(**{_camel(k): v for k, v in values.items()})
    ok, plugins = reader.attempt(parsePlugins, reader, server.plugins, "server.plugins")
    server = attr.evolve(server, plugins=plugins if ok else ())
    if server.accessLog != "-":
        server = attr.evolve(server, accessLog=os.path.join(base, server.accessLog))
    return server


def _listeners(reader, document, base):
    """
    The C{[[listen]]} tables, a placeholder for each with a problem.
    """
    ok, tables = reader.attempt(reader.tables, document.get("listen", []), "listen")
    if ok and not tables:
        reader.record("listen", "at least one [[listen]] table is required")
    listeners = []
    for index, table in enumerate(tables or ()):
        ok, listener = reader.attempt(_listener, reader, index, table, base)
        listeners.append(listener if ok else _BROKEN_LISTENER)
    _checkDistinct(reader, listeners)
    return tuple(listeners)


def _routesAndHosts(reader, document, server, base):
    """
    The C{[[route]]} tables, then the C{[[host]]}s and their routes.

    @return: C{(routes, hosts)}, those without problems.
    """
    _, tables = reader.attempt(reader.tables, document.get("route", []), "route")
    routes = []
    for index, table in enumerate(tables or ()):
        ok, route = reader.attempt(parseRoute, reader, index, table, server, base=base)
        if ok:
            routes.append(route)
    count = len(tables or ())
    hosts = []
    _, tables = reader.attempt(reader.tables, document.get("host", []), "host")
    for index, table in enumerate(tables or ()):
        host, hostRoutes, count = _host(reader, index, table, server, base, count)
        if host is not None:
            hosts.append(host)
        routes.extend(hostRoutes)
    _checkHosts(reader, hosts)
    return tuple(routes), tuple(hosts)


def _demo(reader, document):
    if "demo" not in document:
        return None
    return DemoSettings(
        **reader.settings(reader.table(document["demo"], "demo"), DEMO_KEYS, "demo")
    )


def _document(reader, text):
    """
    The parsed TOML, or L{None} (with the problem recorded).
    """
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        reader.record(None, "not valid TOML: {}".format(e))
    except RecursionError:
        reader.record(None, "not valid TOML: arrays or tables nested too deeply")
    except ValueError as e:
        # An integer too long to convert: the first clause says so.
        reader.record(None, "not valid TOML: {}".format(str(e).split(":")[0]))
    return None


def _parse(reader, text, filename):
    """
    Parse every table of a file, recording the problems.

    @return: C{(document, config)}: the TOML and a L{Config} of the tables
        without problems (in which a listener with problems is a
        placeholder), or C{(None, None)} for text that is not TOML.
    """
    document = _document(reader, text)
    if document is None:
        return None, None
    reader.unknown(document, TOP_KEYS, "")
    base = os.path.dirname(os.path.abspath(filename))
    server = _server(reader, document, base)
    listeners = _listeners(reader, document, base)
    parseUpstreams(reader, document.get("upstream", []))
    routes, hosts = _routesAndHosts(reader, document, server, base)
    _, demo = reader.attempt(_demo, reader, document)
    _, admin = reader.attempt(_admin, reader, document, base)
    config = Config(
        path=filename,
        server=server,
        listeners=listeners,
        routes=routes,
        demo=demo,
        hosts=hosts,
        source=text,
        upstreams=upstreamsWithTLS(reader),
        admin=admin,
    )
    return document, config


def _raiseProblems(problems, document):
    if problems:
        raise ConfigProblems(fileOrder(problems, document))


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
    @raise ConfigProblems: for anything wrong, with every problem.
    """
    reader = Reader(filename)
    document, config = _parse(reader, text, filename)
    _raiseProblems(reader.problems, document)
    return config


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
    values = reader.settings(table, ADMIN_KEYS, "admin", required=["port"])
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
        backend = _backend(Reader("API"), url, "target", None)
    except ConfigError as e:
        raise InvalidRoute("target: " + e.message) from None
    if b"?" in backend.path:
        raise InvalidRoute("target: {!r} may not hold a query".format(url))
    return attr.evolve(backend, path=backend.path.rstrip(b"/"))


def _checkHosts(reader, hosts):
    seen = {}
    defaults = [host.index for host in hosts if host.default]
    for index in defaults[1:]:
        reader.record(
            "host[{}].default".format(index),
            "only one [[host]] may be the default; host[{}] is already".format(defaults[0]),
        )
    for host in hosts:
        for name in host.names:
            if name in seen:
                reader.record(
                    "host[{}].names".format(host.index),
                    "{} is already a name of host[{}]".format(shown(name.decode()), seen[name]),
                )
            else:
                seen[name] = host.index


def _checkDistinct(reader, listeners):
    seen = {}
    for index, listener in enumerate(listeners):
        if listener is _BROKEN_LISTENER:
            continue
        where = (listener.address, listener.port)
        if listener.port and where in seen:
            reader.record(
                "listen[{}]".format(index),
                "{} port {} is already used by listen[{}]".format(
                    listener.address, listener.port, seen[where]
                ),
            )
        else:
            seen[where] = index


def _read(path):
    """
    @return: the text of the file at C{path}.
    @raise ConfigProblems: when it cannot be read, or is not UTF-8.
    """
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        problem = ConfigError(path, None, "cannot read the file: {}".format(_reason(e)))
        raise ConfigProblems([oneLine(problem)]) from None


def loadConfig(path):
    """
    Read, parse and validate a configuration file, including the files it
    names: the access log must be writable and TLS files readable.

    @param path: the file's path.
    @return: a L{Config}.
    @raise ConfigProblems: for anything wrong, with every problem.
    """
    return checkedConfig(_read(path), path)


def _loaded(text, path):
    """
    Parse a file's text and check the files it names.

    @return: C{(reader, document, config)}, C{config} holding only what
        had no problem (for the checks of L{checkConfig}), or L{None}.
    """
    reader = Reader(path)
    document, config = _parse(reader, text, path)
    if config is not None:
        config = _checkFiles(reader, config)
    return reader, document, config


def checkedConfig(text, path):
    """
    Parse and validate the text of a configuration file, including the
    files it names (what L{loadConfig} does once it has read the file).

    @raise ConfigProblems: for anything wrong, with every problem.
    """
    reader, document, config = _loaded(text, path)
    _raiseProblems(reader.problems, document)
    return config


def loadAndCheck(path):
    """
    Every check start-up runs, except binding the listening sockets: read,
    parse and validate the file (L{loadConfig}) and load what its files
    hold (L{checkConfig}).  All the problems are found together: the
    checks of L{checkConfig} run on the parts of the file that loaded.

    @param path: the file's path.
    @return: a L{Config}.
    @raise ConfigProblems: for anything wrong, with every problem.
    """
    reader, document, config = _loaded(_read(path), path)
    problems = list(reader.problems)
    if config is not None:
        problems.extend(_loadedChecks(config))
    _raiseProblems(problems, document)
    return config


def checkConfig(config):
    """
    The start-time checks beyond parsing, each listener and route on its
    own: the TLS context of each TLS listener (its certificate, those of the
    C{[[host]]}s, client CAs), the TLS client settings of each https:// and
    wss:// backend, and each htpasswd file.  Binding sockets is not one of
    them (a running server holds them).

    @param config: a L{Config}, as L{loadConfig} returns it.
    @raise ConfigProblems: with every problem found.
    """
    problems = _loadedChecks(config)
    if problems:
        _raiseProblems(problems, _documentOf(config))


def _documentOf(config):
    """
    The TOML of a config, to put problems in file order.
    """
    try:
        return tomllib.loads(config.source)
    except (ValueError, RecursionError):
        return None


def _loadedChecks(config):
    """
    The problems of L{checkConfig}, unsorted.
    """
    # The TLS helpers are imported here, from where they are: they pull in
    # pyOpenSSL and the service, which parsing does not need.
    try:
        from .tls import BackendTLSPolicy, serverContext
    except ImportError:
        from .service import BackendTLSPolicy, serverContext
    from .gate import Gate

    problems = []

    def attempt(check, *args):
        try:
            check(*args)
        except ConfigError as e:
            problems.append(oneLine(e))

    for listener in config.listeners:
        if listener.tls is not None:
            attempt(serverContext, config, listener)
    backends, htpasswds = set(), set()
    for route in config.routes:
        alone = attr.evolve(config, routes=(route,))
        if route.backend.secure and route.backend.key not in backends:
            backends.add(route.backend.key)
            attempt(BackendTLSPolicy, alone)
        access = route.access
        if access is not None and access.htpasswd and access.htpasswd not in htpasswds:
            htpasswds.add(access.htpasswd)
            attempt(Gate.forConfig, alone)
    problems.extend(_pluginProblems(config))
    problems.extend(_adminProblems(config))
    return problems


def _adminProblems(config):
    """
    The problems of the C{[admin]} table beyond its keys: a route file that
    is not one, and workers (the API's routes and the metrics live in one
    process).
    """
    admin = config.admin
    if admin is None:
        return []
    problems = []
    if config.server.workers > 1:
        problems.append(ConfigError(
            config.path, "admin",
            "the admin listener needs workers = 1 (its metrics and the routes added "
            "through its API live in one process); remove [admin] or set "
            "server.workers = 1, and run more instances on a shared Redis route store"))
    if admin.routeStore == "file":
        from .apiroutes import APIRouteTable
        from .errors import RouteStoreError
        from .routestore import readFileDocument

        try:
            readFileDocument(admin.routeStoreFile, APIRouteTable(admin.hostRouting))
        except RouteStoreError as e:
            problems.append(ConfigError(config.path, "admin.route_store_file", str(e)))
    return problems


def _pluginProblems(config):
    """
    The problems of the config's plugins: names not installed, options
    their factories refuse (L{proxyws.plugins.buildPlugins}).
    """
    from .plugins import buildPlugins

    try:
        buildPlugins(config)
    except ConfigError as e:
        return [oneLine(problem) for problem in problemsOf(e)]
    return []


def _reason(error):
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


def _checkFiles(reader, config):
    """
    Check the files a config names: the access log can be opened for
    appending, TLS certificates and keys can be read.

    @return: C{config} without the listeners and host certificates whose
        files cannot be read, for the checks that load them.
    """
    if config.server.accessLog != "-":
        reader.attempt(_checkAccessLog, config)
    listeners = list(config.listeners)
    for index, listener in enumerate(listeners):
        if listener.tls is not None:
            if not _readable(reader, listener.tls, "listen[{}].tls".format(index)):
                listeners[index] = _BROKEN_LISTENER
    hosts = [
        host
        if host.tls is None or _readable(reader, host.tls, "host[{}].tls".format(host.index))
        else attr.evolve(host, tls=None)
        for host in config.hosts
    ]
    return attr.evolve(config, listeners=tuple(listeners), hosts=tuple(hosts))


def _checkAccessLog(config):
    try:
        os.close(os.open(config.server.accessLog, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
    except OSError as e:
        raise ConfigError(
            config.path,
            "server.access_log",
            "cannot open {} for appending: {}".format(shown(config.server.accessLog), _reason(e)),
        ) from None


def _readable(reader, tls, keyPath):
    """
    Record the certificate and key files of C{tls} that cannot be read.

    @return: whether both can.
    """
    readable = True
    for key in ("cert", "key"):
        name = getattr(tls, key)
        if not os.access(name, os.R_OK):
            readable = False
            reader.record(
                "{}.{}".format(keyPath, key),
                "cannot read {}: {}".format(
                    shown(name),
                    "no such file" if not os.path.exists(name) else "permission denied",
                ),
            )
    return readable
