"""
The C{jwt} plugin: an authenticator of JSON Web Tokens (RFC 7519), checked
by PyJWT::

    plugins = [{ name = "jwt", secret_env = "JWT_SECRET", audience = "shiny",
                 user_header = "X-Forwarded-User" }]

The token comes from C{Authorization: Bearer TOKEN} (RFC 6750), else from
the cookie named by C{cookie}, else from the query parameter named by
C{query} (browsers cannot set headers on a websocket).  Its signature is
checked with the HMAC secret in the environment variable C{secret_env}
(HS256 by default) or the PEM public key in the file C{public_key} (RS256 by
default); C{exp} is required, and checked, with C{leeway} seconds; C{aud}
and C{iss} when C{audience} and C{issuer} are given.  The user is the claim
C{user_claim} (C{sub} by default).  A request without a token gets 401 with
C{WWW-Authenticate: Bearer realm="..."}; one with a bad token the same with
C{error="invalid_token"}.  With C{user_header}, the backend gets the user in
that header (the client's own copies are removed).
"""

import os
import re
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs

import jwt
from zope.interface import implementer

from ..access import challenge
from ..errors import PluginOptionError
from ..interfaces import IAuthenticator
from ..pluginvalues import Identity, Response

# A header field name.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# Algorithms by kind of key (never "none").
HMAC = ("HS256", "HS384", "HS512")
PUBLIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


@implementer(IAuthenticator)
class JWTAuthenticator:
    """
    Authenticates requests by a signed token.

    @ivar key: the HMAC secret (L{bytes}) or the public key.
    @ivar algorithms: the algorithms a token may be signed with.
    """

    def __init__(self, key, algorithms, audience=None, issuer=None, leeway=0,
                 userClaim="sub", cookie=None, query=None, userHeader=None, realm="proxyws"):
        self.key = key
        self.algorithms = list(algorithms)
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway
        self.userClaim = userClaim
        self.cookie = cookie
        self.query = query
        self.userHeader = userHeader.encode("ascii") if userHeader else None
        self._realm = realm
        self._missing = Response.error(
            401, "Unauthorized", "a bearer token is required",
            (("WWW-Authenticate", _bearer(realm)),),
        )

    def authenticate(self, request):
        """
        See L{IAuthenticator.authenticate}.
        """
        headers = request.headers
        if self.userHeader is not None:
            headers.removeHeader(self.userHeader)
        token = self._token(request)
        if token is None:
            return self._missing
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp"], "verify_aud": self.audience is not None},
            )
        except jwt.InvalidTokenError as e:
            return self._invalid(str(e) or type(e).__name__)
        user = claims.get(self.userClaim)
        if not isinstance(user, str) or not user:
            return self._invalid("the token has no {!r} claim".format(self.userClaim))
        if self.userHeader is not None:
            headers.setRawHeaders(self.userHeader, [user.encode("utf-8")])
        return Identity(user, claims)

    def _token(self, request):
        values = request.headers.getRawHeaders(b"Authorization")
        if values:
            scheme, _, token = values[0].partition(b" ")
            if len(values) == 1 and scheme.lower() == b"bearer" and token.strip():
                return token.strip().decode("latin-1")
            return None
        if self.cookie is not None:
            for value in request.headers.getRawHeaders(b"Cookie") or ():
                try:
                    morsel = SimpleCookie(value.decode("latin-1")).get(self.cookie)
                except CookieError:
                    continue
                if morsel is not None and morsel.value:
                    return morsel.value
        if self.query is not None:
            query = request.uri.partition(b"?")[2].decode("latin-1")
            found = parse_qs(query).get(self.query)
            if found:
                return found[0]
        return None

    def _invalid(self, why):
        value = _bearer(self._realm) + b', error="invalid_token"'
        return Response.error(
            401, "Unauthorized", "invalid token: {}".format(why), (("WWW-Authenticate", value),)
        )


def _bearer(realm):
    """
    The C{WWW-Authenticate} challenge of RFC 6750, with the same quoting as
    Basic's (L{proxyws.access.challenge}).
    """
    basic = challenge(realm)
    return b"Bearer" + basic[len(b"Basic"):basic.index(b", charset")]


def _key(options):
    if ("secret_env" in options) == ("public_key" in options):
        raise PluginOptionError(None, "give exactly one of secret_env and public_key")
    if "secret_env" in options:
        name = options.takeString("secret_env")
        secret = os.environ.get(name)
        if not secret:
            raise PluginOptionError(
                "secret_env",
                "the environment variable {!r} is not set (or empty); set it to the "
                "tokens' HMAC secret".format(name),
            )
        return secret.encode("utf-8"), HMAC, ["HS256"]
    path = options.takePath("public_key")
    try:
        with open(path, "rb") as f:
            pem = f.read()
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        key = load_pem_public_key(pem)
    except (OSError, ValueError) as e:
        raise PluginOptionError(
            "public_key", "cannot read a PEM public key from {!r}: {}".format(path, e)
        ) from None
    return key, PUBLIC, ["RS256"]


def jwtPlugin(options):
    """
    The C{jwt} plugin's factory.

    @param options: a L{proxyws.plugins.PluginOptions}: C{secret_env} or
        C{public_key}, and C{algorithms}, C{audience}, C{issuer},
        C{leeway}, C{user_claim}, C{cookie}, C{query}, C{user_header},
        C{realm}.
    @return: a L{JWTAuthenticator}.
    @raise PluginOptionError: for options it cannot use.
    """
    options.checkKeys(
        "secret_env", "public_key", "algorithms", "audience", "issuer", "leeway",
        "user_claim", "cookie", "query", "user_header", "realm",
    )
    key, allowed, default = _key(options)
    algorithms = options.takeStrings("algorithms", tuple(default))
    for n, name in enumerate(algorithms):
        if name not in allowed:
            raise PluginOptionError(
                "algorithms[{}]".format(n),
                "{!r} is not one of {} (for this kind of key)".format(name, ", ".join(allowed)),
            )
    userHeader = options.takeString("user_header", None)
    if userHeader is not None and not _TOKEN.fullmatch(userHeader):
        raise PluginOptionError("user_header", "{!r} is not a header field name".format(userHeader))
    realm = options.takeString("realm", "proxyws")
    try:
        challenge(realm)
    except ValueError as e:
        raise PluginOptionError("realm", str(e)) from None
    return JWTAuthenticator(
        key,
        algorithms,
        audience=options.takeString("audience", None),
        issuer=options.takeString("issuer", None),
        leeway=options.takeNumber("leeway", 0),
        userClaim=options.takeString("user_claim", "sub"),
        cookie=options.takeString("cookie", None),
        query=options.takeString("query", None),
        userHeader=userHeader,
        realm=realm,
    )
