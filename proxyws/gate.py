"""
Access control at the door: client addresses and HTTP Basic authentication,
checked before any backend is contacted (websocket upgrades included).

The rules themselves are pure code in L{proxyws.access}; this module applies
a route's L{proxyws.config.Access} to a request and answers 403 or 401.
"""

from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from .access import Htpasswd, allowed, challenge, parseBasicAuth
from .errors import ConfigError, Forbidden, Unauthorized, errorPage
from .interfaces import IGate
from .logs import ProxyLogger

_log = ProxyLogger()


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
        header = request.requestHeaders.getRawHeaders(b"Authorization")
        credentials = parseBasicAuth(header[0]) if header else None
        if credentials is None:
            return self._refuse(request, access, None)
        htpasswd = self.htpasswds[access.htpasswd]
        pool = getattr(self._reactor, "getThreadPool", None)
        if pool is None:
            return self._checked(htpasswd.check(*credentials), request, access, credentials)
        checking = deferToThreadPool(self._reactor, pool(), htpasswd.check, *credentials)
        return checking.addCallback(self._checked, request, access, credentials)

    def _checked(self, good, request, access, credentials):
        if good:
            request.remoteUser = credentials[0]
            return True
        return self._refuse(request, access, credentials[0])

    def _refuse(self, request, access, user):
        if request.channel is None:
            return False  # the client left while the password was checked
        if user is not None:
            _log.info(
                "{client}: user {user} failed to authenticate for {uri}",
                client=request.clientHost,
                user=user.decode("utf-8", "replace"),
                uri=request.uri.decode("latin-1"),
            )
        request.responseHeaders.setRawHeaders(b"WWW-Authenticate", [challenge(access.realm)])
        errorPage(request, Unauthorized("a valid user name and password are required"))
        return False
