"""
Plugins: what installed packages add to proxyws, and the values plugins
deal in.

A plugin is an entry point of the C{proxyws.plugins} group (standard Python
packaging: C{pip install proxyws-something} makes it available).  The entry
point names a factory; the factory takes the plugin's options table from
the config (a L{PluginOptions}) and returns a provider of one or more of the
interfaces of L{proxyws.interfaces}: L{IRequestFilter}, L{IResponseFilter},
L{IWebSocketFilter}, L{IAuthenticator}, or L{IBackendSelector} for an
upstream's policy.  The config names plugins with their options::

    [server]
    plugins = [{ name = "headers", set = { "X-Frame-Options" = "DENY" } }]

    [[route]]
    path = "/api/"
    backend = "http://127.0.0.1:9000/"
    plugins = [{ name = "cors", origins = ["https://app.example.com"] }]

L{buildPlugins} is the one function that builds plugin providers from a
config: at start, for C{proxyws check}, and at each reload (a reload builds
new ones; nothing here is global).  An unknown name, a factory that refuses
its options or a provider of no fitting interface is a L{ConfigError} naming
the file and the key path.

Every call into a plugin goes through L{Plugin.call}: its time is measured
(a call over L{SLOW_CALL} seconds is logged), an exception is logged once
with the plugin's name and traceback and becomes L{PluginFailed}, and a
L{Deferred} is waited for at most C{[server] plugin_timeout} seconds.
L{proxyws.filters} runs the chains of a route; L{proxyws.wsmessages} the
websocket filters.
"""

import difflib
import os
import time
from importlib.metadata import entry_points

import attr
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from .errors import ConfigError, ConfigProblems, PluginFailed, PluginOptionError, PluginTimeout
from .interfaces import (
    IAuthenticator,
    IBackendSelector,
    IRequestFilter,
    IResponseFilter,
    IWebSocketFilter,
)
from .logs import ProxyLogger
from .values import PluginReference
from .pluginvalues import (
    DROP,
    PASS,
    Close,
    Identity,
    Message,
    PluginRequest,
    PluginResponse,
    Response,
    WebSocketConnection,
    writeResponse,
)
from .reader import shown

# What plugin authors import from here.
__all__ = [
    "Close",
    "DROP",
    "Identity",
    "Message",
    "PASS",
    "PluginOptionError",
    "PluginOptions",
    "PluginReference",
    "PluginRequest",
    "PluginResponse",
    "Response",
    "WebSocketConnection",
    "buildPlugins",
    "installedPlugins",
    "writeResponse",
]

# The entry-point group plugins are found in.
GROUP = "proxyws.plugins"

# A call into a plugin that holds the event loop longer than this many
# seconds is logged (at most once every SLOW_LOG_INTERVAL seconds per
# plugin, with the count of slow calls since): every other connection
# waited that long.
SLOW_CALL = 0.01
SLOW_LOG_INTERVAL = 10.0

# Seconds a plugin's Deferred may take, unless [server] plugin_timeout says.
DEFAULT_TIMEOUT = 10.0

# The interfaces a provider may give in a "plugins" list, and in an
# upstream's "policy": a provider of none of them is a config error.
LIST_INTERFACES = (IRequestFilter, IResponseFilter, IWebSocketFilter, IAuthenticator)
POLICY_INTERFACES = (IBackendSelector,)

_log = ProxyLogger()

# What times each call (monotonic, high resolution).
_clock = time.perf_counter


# ---------------------------------------------------------------------------
# Options.
# ---------------------------------------------------------------------------

_REQUIRED = object()


class PluginOptions(dict):
    """
    A plugin's table from the config, less its C{name}: what its factory
    gets.  The C{take...} methods read and check one option each and raise
    L{PluginOptionError} naming the key, the value and what was expected;
    L{checkKeys} refuses keys the plugin does not know.

    @ivar directory: the config file's folder (relative paths are relative
        to it).
    @ivar reactor: the reactor, or L{None} when the provider is built only
        to check the options (C{proxyws check}).
    """

    def __init__(self, table, directory, reactor=None):
        dict.__init__(self, table)
        self.directory = directory
        self.reactor = reactor

    def checkKeys(self, *known):
        """
        @raise PluginOptionError: for a key not in C{known}.
        """
        for key in self:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = " (did you mean {!r}?)".format(close[0]) if close else ""
                raise PluginOptionError(
                    key,
                    "unknown option{}; this plugin's options are {}".format(
                        hint, ", ".join(sorted(known)) or "none"
                    ),
                )

    def _take(self, key, default, accepts, expected):
        if key not in self:
            if default is _REQUIRED:
                raise PluginOptionError(key, "is required and missing")
            return default
        value = self[key]
        if not accepts(value):
            raise PluginOptionError(key, "{} is not {}".format(shown(value), expected))
        return value

    def takeString(self, key, default=_REQUIRED):
        """
        @return: the text value of C{key}.
        """
        return self._take(key, default, lambda v: isinstance(v, str), "a string")

    def takeBoolean(self, key, default=_REQUIRED):
        """
        @return: the boolean value of C{key}.
        """
        return self._take(key, default, lambda v: isinstance(v, bool), "true or false")

    def takeNumber(self, key, default=_REQUIRED, minimum=0, integer=False):
        """
        @return: the number value of C{key}, at least C{minimum}.
        """
        kinds = int if integer else (int, float)
        expected = "a whole number" if integer else "a number"
        if minimum is not None:
            expected += " of at least {}".format(minimum)
        return self._take(
            key,
            default,
            lambda v: isinstance(v, kinds) and not isinstance(v, bool)
            and (minimum is None or v >= minimum),
            expected,
        )

    def takeStrings(self, key, default=_REQUIRED):
        """
        @return: the list of strings of C{key}, as a tuple.
        """
        value = self._take(
            key,
            default,
            lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
            "a list of strings",
        )
        return tuple(value) if isinstance(value, list) else value

    def takeTable(self, key, default=_REQUIRED):
        """
        @return: the table (a L{dict}) of C{key}.
        """
        return self._take(key, default, lambda v: isinstance(v, dict), "a table")

    def takePath(self, key, default=_REQUIRED):
        """
        @return: the file path of C{key}, relative to L{directory}.
        """
        value = self.takeString(key, default)
        if value is default:
            return value
        return os.path.join(self.directory, value)


# ---------------------------------------------------------------------------
# A built plugin, and every call into it.
# ---------------------------------------------------------------------------


class Plugin:
    """
    A provider built from a L{PluginReference}, called through L{call}.

    @ivar name: its entry point's name.
    @ivar keyPath: where the config names it.
    @ivar provider: what its factory returned.
    """

    __slots__ = ("name", "keyPath", "provider", "_clock", "_timeout", "_slow", "_slowSince")

    def __init__(self, name, keyPath, provider, clock=None, timeout=DEFAULT_TIMEOUT):
        """
        @param clock: the C{IReactorTime} that times L{Deferred}s out.
        @param timeout: seconds a L{Deferred} may take.
        """
        self.name = name
        self.keyPath = keyPath
        self.provider = provider
        self._clock = clock
        self._timeout = timeout
        self._slow = 0
        self._slowSince = None

    def provides(self, interface):
        """
        @return: whether the provider provides C{interface}.
        """
        return interface.providedBy(self.provider)

    def call(self, method, *args):
        """
        Call the provider's C{method} with C{args}.

        @return: what it returned; for a L{Deferred} that has already
            fired, what it fired with; for one that has not, a L{Deferred}
            that fires with its result, or fails with L{PluginTimeout}
            after the timeout (the plugin's L{Deferred} is cancelled), or
            with L{CancelledError} when the caller cancels it.
        @raise PluginFailed: when the call raised or its L{Deferred}
            failed (logged once here).
        """
        start = _clock()
        try:
            result = getattr(self.provider, method)(*args)
        except Exception:
            self._logFailure(Failure(), method)
            raise PluginFailed(self.name) from None
        finally:
            elapsed = _clock() - start
            if elapsed > SLOW_CALL:
                self._noteSlow(method, elapsed)
        # (None first: isinstance of Deferred, an ABC, is the slower test.)
        if result is not None and isinstance(result, Deferred):
            return self._wait(result, method)
        return result

    def _wait(self, deferred, method):
        if deferred.called:
            outcome = []
            deferred.addBoth(outcome.append)
            if isinstance(outcome[0], Failure):
                self._logFailure(outcome[0], method)
                raise PluginFailed(self.name)
            return outcome[0]
        deferred.addTimeout(self._timeout, self._clock)
        return deferred.addErrback(self._deferredFailed, method)

    def _deferredFailed(self, failure, method):
        if failure.check(TimeoutError):
            _log.error(
                "plugin {plugin} ({keyPath}) did not answer {method} within {timeout} s",
                plugin=self.name,
                keyPath=self.keyPath,
                method=method,
                timeout=self._timeout,
            )
            raise PluginTimeout(self.name)
        if failure.check(CancelledError):
            return failure
        self._logFailure(failure, method)
        raise PluginFailed(self.name)

    def _logFailure(self, failure, method):
        _log.failure(
            "plugin {plugin} ({keyPath}) failed in {method}",
            failure,
            plugin=self.name,
            keyPath=self.keyPath,
            method=method,
        )

    def _noteSlow(self, method, elapsed):
        """
        Log a slow call, at most once every L{SLOW_LOG_INTERVAL} seconds.
        """
        self._slow += 1
        now = time.monotonic()
        if self._slowSince is not None and now - self._slowSince < SLOW_LOG_INTERVAL:
            return
        _log.warn(
            "plugin {plugin} ({keyPath}) held the event loop {ms:.1f} ms in {method} "
            "({count} call(s) over {limit:.0f} ms since the last warning)",
            plugin=self.name,
            keyPath=self.keyPath,
            method=method,
            ms=elapsed * 1000,
            count=self._slow,
            limit=SLOW_CALL * 1000,
        )
        self._slow = 0
        self._slowSince = now

    def failed(self, detail):
        """
        The provider returned something its interface does not allow: log
        it once.

        @return: the L{PluginFailed} to raise.
        """
        _log.error(
            "plugin {plugin} ({keyPath}) failed: {detail}",
            plugin=self.name,
            keyPath=self.keyPath,
            detail=detail,
        )
        return PluginFailed(self.name)


# ---------------------------------------------------------------------------
# Discovery and building.
# ---------------------------------------------------------------------------


def installedPlugins():
    """
    The plugins installed, from the C{proxyws.plugins} entry points.

    @return: a L{dict} of name to C{importlib.metadata.EntryPoint}, in
        name order (for a name two distributions declare, the first found).
    """
    found = {}
    for entryPoint in entry_points(group=GROUP):
        found.setdefault(entryPoint.name, entryPoint)
    return dict(sorted(found.items()))


class PluginSet:
    """
    The plugins built from one config (see L{buildPlugins}).

    @ivar routes: route index -> its L{proxyws.filters.RoutePlugins}, for
        the routes that have plugins.
    @ivar plugins: every L{Plugin} built, in config order.
    """

    def __init__(self, routes, plugins):
        self.routes = routes
        self.plugins = plugins

    def install(self, httpHandlers, webSocketHandlers):
        """
        Put each route's plugins in front of its handlers (in place).

        @param httpHandlers: route index -> its HTTP handler.
        @param webSocketHandlers: route index -> its websocket handler.
        """
        from .filters import install

        for index, routePlugins in self.routes.items():
            install(routePlugins, httpHandlers, webSocketHandlers, index)


class _Builder:
    """
    Builds the plugins of one config, collecting every problem.
    """

    def __init__(self, config, reactor, available):
        self.reactor = reactor
        self.available = installedPlugins() if available is None else available
        server = config.server
        self.timeout = getattr(server, "pluginTimeout", DEFAULT_TIMEOUT)
        self.problems = []
        self.built = {}

    def problem(self, reference, keyPath, message):
        self.problems.append(ConfigError(reference.filename, keyPath, message))

    def build(self, reference, interfaces):
        """
        The L{Plugin} of C{reference}, built once; L{None} when it cannot be.
        """
        if reference in self.built:
            return self.built[reference]
        plugin = self.built[reference] = self._build(reference, interfaces)
        return plugin

    def _factory(self, reference):
        name = reference.name
        entry = self.available.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, list(self.available), n=1)
            hint = " (did you mean {!r}?)".format(close[0]) if close else ""
            installed = ", ".join(self.available) or "none"
            self.problem(
                reference,
                reference.nameKeyPath,
                "{} is not an installed plugin{}; installed plugins: {} (a plugin is "
                "a package declaring a {!r} entry point)".format(shown(name), hint, installed, GROUP),
            )
            return None
        if not hasattr(entry, "load"):
            return entry
        try:
            return entry.load()
        except Exception as e:
            self.problem(
                reference,
                reference.nameKeyPath,
                "plugin {!r} cannot be loaded: {}: {}".format(name, type(e).__name__, e),
            )
            return None

    def _build(self, reference, interfaces):
        factory = self._factory(reference)
        if factory is None:
            return None
        options = PluginOptions(reference.options, reference.directory, self.reactor)
        try:
            provider = factory(options)
        except PluginOptionError as e:
            where = reference.keyPath + ("." + e.key if e.key else "")
            self.problem(reference, where, e.message)
            return None
        except Exception as e:
            self.problem(
                reference,
                reference.keyPath,
                "plugin {!r} refused its options: {}: {}".format(reference.name, type(e).__name__, e),
            )
            return None
        return self._check(reference, provider, interfaces)

    def _check(self, reference, provider, interfaces):
        provided = [i for i in interfaces if i.providedBy(provider)]
        if not provided:
            self.problem(
                reference,
                reference.nameKeyPath,
                "plugin {!r} provides none of {}; it cannot be used here".format(
                    reference.name, ", ".join(i.__name__ for i in interfaces)
                ),
            )
            return None
        for interface in provided:
            try:
                verifyObject(interface, provider)
            except Invalid as e:
                self.problem(
                    reference,
                    reference.nameKeyPath,
                    "plugin {!r} does not implement {} as declared: {}".format(
                        reference.name, interface.__name__, " ".join(str(e).split())
                    ),
                )
                return None
        return Plugin(reference.name, reference.keyPath, provider, self.reactor, self.timeout)


def buildPlugins(config, reactor=None, available=None):
    """
    Build every plugin a config names, and each route's chains.

    A route's plugins are those of C{[server]}, then its C{[[host]]}'s,
    then its own, in that order; a reference shared by several routes is
    built once.  Each upstream's plugin C{policy} is built once here to
    check it (the upstream builds its own selector, as for its other
    policies).

    @param config: a L{proxyws.values.Config}.
    @param reactor: the reactor (the clock of the timeouts), or L{None}
        to check the config only.
    @param available: name -> entry point (or factory) to use instead of
        the installed plugins.
    @return: a L{PluginSet}.
    @raise ConfigProblems: with every problem.
    """
    from .filters import RoutePlugins

    builder = _Builder(config, reactor, available)
    server = tuple(getattr(config.server, "plugins", ()))
    hosts = {host.index: tuple(getattr(host, "plugins", ())) for host in config.hosts}
    for reference in server + sum(hosts.values(), ()):
        builder.build(reference, LIST_INTERFACES)
    routes = {}
    for route in config.routes:
        references = server + hosts.get(route.vhost, ()) + tuple(getattr(route, "plugins", ()))
        plugins = [builder.build(reference, LIST_INTERFACES) for reference in references]
        plugins = [plugin for plugin in plugins if plugin is not None]
        if plugins:
            routes[route.index] = RoutePlugins.fromPlugins(plugins, route)
    for upstream in config.upstreams:
        reference = getattr(upstream, "policyPlugin", None)
        if reference is not None:
            builder.build(reference, POLICY_INTERFACES)
    if builder.problems:
        raise ConfigProblems(builder.problems)
    return PluginSet(routes, tuple(p for p in builder.built.values() if p is not None))


def selectorFor(reference, reactor=None, available=None):
    """
    A new L{IBackendSelector} from an upstream's plugin C{policy}, its
    calls isolated as every plugin's are (L{GuardedSelector}).

    @param reference: the upstream's C{policyPlugin} L{PluginReference}.
    @raise ConfigError: when it cannot be built (L{buildPlugins} has
        checked it at start).
    """
    builder = _Builder(_NoConfig(reference.filename), reactor, available)
    plugin = builder.build(reference, POLICY_INTERFACES)
    if plugin is None:
        raise builder.problems[0]
    return GuardedSelector(plugin)


@implementer(IBackendSelector)
class GuardedSelector:
    """
    A plugin's balancing policy, called as every plugin is (L{Plugin.call}).
    """

    def __init__(self, plugin):
        """
        @param plugin: the L{Plugin} whose provider is the selector.
        """
        self.plugin = plugin

    def select(self, candidates, request):
        """
        See L{IBackendSelector.select}.

        @raise PluginFailed: when the plugin raised or chose something
            else than one of C{candidates} (logged): the request gets 500.
        """
        plugin = self.plugin
        chosen = plugin.call("select", candidates, request)
        if not any(chosen is candidate for candidate in candidates):
            if isinstance(chosen, Deferred):
                chosen.cancel()
            raise plugin.failed("select returned {!r}, not one of the candidates".format(chosen))
        return chosen


@attr.s(frozen=True, slots=True)
class _NoConfig:
    """
    What L{_Builder} reads of a config, for building one reference.
    """

    path = attr.ib()
    server = None
