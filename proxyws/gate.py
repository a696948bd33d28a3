"""
Access control at the door: client addresses and HTTP Basic authentication,
checked before any backend is contacted (websocket upgrades included).

The rules themselves are pure code in L{proxyws.access}; this module applies
a route's L{proxyws.config.Access} to a request and answers 403 or 401.  The
Basic check against an htpasswd file is an L{IAuthenticator}
(L{HtpasswdAuthenticator}), the first of them: plugins provide others, and
this one is a plugin too (C{htpasswd}), for a route's C{plugins} list.
"""

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from .access import Htpasswd, allowed, challenge, parseBasicAuth
from .errors import ConfigError, Forbidden, PluginOptionError, errorPage
from .interfaces import IAuthenticator, IGate
from .logs import ProxyLogger
from .pluginvalues import Identity, PluginRequest, Response, writeResponse

_log = ProxyLogger()

# What a client without valid credentials is told.
_REFUSAL = "a valid user name and password are required"


@implementer(IAuthenticator)
class HtpasswdAuthenticator:
    """
    HTTP Basic authentication against the users of an htpasswd file.

    @ivar htpasswd: the L{Htpasswd}.
    @ivar realm: the realm of the challenge.
    """

    def __init__(self, htpasswd, realm="proxyws", reactor=None):
        """
        @param htpasswd: an L{Htpasswd}.
        @param realm: the realm shown to the user.
        @param reactor: a reactor with a thread pool, to check passwords
            off the reactor thread (bcrypt is slow by design); L{None}, or
            one without a pool, checks them in line.
        """
        self.htpasswd = htpasswd
        self.realm = realm
        self._challenge = challenge(realm)
        self._reactor = reactor

    def authenticate(self, request):
        """
        Check the request's Basic credentials (see
        L{IAuthenticator.authenticate}).

        @return: an L{Identity}, a 401 L{Response}, or a L{Deferred} firing
            with one of those once the password has been checked in a
            thread.
        """
        header = request.headers.getRawHeaders(b"Authorization")
        credentials = parseBasicAuth(header[0]) if header else None
        if credentials is None:
            return self._refusal(request, None)
        pool = getattr(self._reactor, "getThreadPool", None)
        if pool is None:
            return self._checked(self.htpasswd.check(*credentials), request, credentials)
        checking = deferToThreadPool(self._reactor, pool(), self.htpasswd.check, *credentials)
        return checking.addCallback(self._checked, request, credentials)

    def _checked(self, good, request, credentials):
        if good:
            return Identity(credentials[0].decode("utf-8", "surrogateescape"))
        return self._refusal(request, credentials[0])

    def _refusal(self, request, user):
        if user is not None:
            _log.info(
                "{client}: user {user} failed to authenticate for {uri}",
                client=request.clientAddress,
                user=user.decode("utf-8", "replace"),
                uri=request.uri.decode("latin-1"),
            )
        return Response.error(
            401, "Unauthorized", _REFUSAL, (("WWW-Authenticate", self._challenge),)
        )


def htpasswdPlugin(options):
    """
    The C{htpasswd} plugin: an L{HtpasswdAuthenticator} for a route's
    C{plugins} list, with options C{file} (required) and C{realm}.

    @param options: a L{proxyws.plugins.PluginOptions}.
    @raise PluginOptionError: for a file that cannot be read or options it
        does not know.
    """
    options.checkKeys("file", "realm")
    path = options.takePath("file")
    realm = options.takeString("realm", "proxyws")
    try:
        challenge(realm)
    except ValueError as e:
        raise PluginOptionError("realm", str(e)) from None
    try:
        htpasswd = Htpasswd.load(path)
    except ValueError as e:
        raise PluginOptionError("file", str(e)) from None
    return HtpasswdAuthenticator(htpasswd, realm, options.reactor)


@implementer(IGate)
class Gate:
    """
    Checks requests against the access settings of their route.

    @ivar htpasswds: htpasswd file path -> its loaded users.
    """

    def __init__(self, htpasswds, reactor=None):
        """
        @param htpasswds: htpasswd file path -> L{Htpasswd}.
        @param reactor: a reactor with a thread pool, to check passwords
            off the reactor thread (bcrypt is slow by design); L{None}, or
            one without a pool, checks them in line.
        """
        self.htpasswds = htpasswds
        self._reactor = reactor
        # (htpasswd path, realm) -> its HtpasswdAuthenticator.
        self._authenticators = {}

    @classmethod
    def forConfig(cls, config, reactor=None):
        """
        Load every htpasswd file a config names.

        @raise ConfigError: for a file that cannot be read or parsed.
        """
        htpasswds = {}
        for route in config.routes:
            access = route.access
            if access is None or access.htpasswd is None or access.htpasswd in htpasswds:
                continue
            try:
                htpasswds[access.htpasswd] = Htpasswd.load(access.htpasswd)
            except OSError as e:
                raise ConfigError(
                    config.path,
                    access.keyPath + ".htpasswd",
                    "cannot read {!r}: {}".format(access.htpasswd, e.strerror or e),
                ) from None
            except ValueError as e:
                raise ConfigError(config.path, access.keyPath + ".htpasswd", str(e)) from None
        return cls(htpasswds, reactor)

    def authenticator(self, access):
        """
        The authenticator of a route's C{auth}.

        @param access: a L{proxyws.config.Access} with an C{htpasswd}.
        @return: its L{HtpasswdAuthenticator}.
        """
        key = (access.htpasswd, access.realm)
        found = self._authenticators.get(key)
        if found is None:
            found = self._authenticators[key] = HtpasswdAuthenticator(
                self.htpasswds[access.htpasswd], access.realm, self._reactor
            )
        return found

    def admit(self, request, access):
        """
        Let C{request} through, or answer it with 403 or 401.

        @param access: the route's L{proxyws.config.Access}.
        @return: whether the request may go on to the backend, or a
            L{Deferred} firing with that once a password has been checked.
        """
        if access.rules is not None and not allowed(access.rules, request.clientHost):
            _log.info(
                "{client}: access to {uri} denied by address rules",
                client=request.clientHost,
                uri=request.uri.decode("latin-1"),
            )
            errorPage(request, Forbidden("access from this address is not allowed"))
            return False
        if access.htpasswd is None:
            return True
        outcome = self.authenticator(access).authenticate(PluginRequest(request))
        if isinstance(outcome, Deferred):
            return outcome.addCallback(self._authenticated, request)
        return self._authenticated(outcome, request)

    def _authenticated(self, outcome, request):
        if isinstance(outcome, Identity):
            request.remoteUser = outcome.user.encode("utf-8", "surrogateescape")
            return True
        if request.channel is not None:  # else the client left meanwhile
            writeResponse(request, outcome)
        return False
