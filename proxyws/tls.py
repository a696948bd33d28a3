"""
TLS with pyOpenSSL: contexts for listeners, and certificate checks for
C{https://} and C{wss://} backends.

Listeners offer TLS 1.2 and 1.3 only, ALPN C{http/1.1}, with the
certificate chain and key read from PEM files.  Backends are verified against
the system's trusted CAs, with the host name checked by service-identity
(through Twisted's C{optionsForClientTLS}).
"""

import datetime

from OpenSSL import SSL, crypto
from twisted.internet import ssl

from .errors import ConfigError

_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"


def _readCertificates(path):
    with open(path, "rb") as f:
        data = f.read()
    pieces = [
        _PEM_CERTIFICATE + piece
        for piece in data.split(_PEM_CERTIFICATE)[1:]
    ]
    return [crypto.load_certificate(crypto.FILETYPE_PEM, piece) for piece in pieces]


def serverOptions(settings, configPath="proxyws.toml", keyPath="listen[0].tls"):
    """
    Build the TLS options of a listener, checking its files.

    @param settings: a L{proxyws.config.TLSSettings}.
    @param configPath: the config file, for messages.
    @param keyPath: where the settings are in the config, for messages.
    @return: a L{twisted.internet.ssl.CertificateOptions}.
    @raise ConfigError: for an unreadable or invalid certificate or key, a
        key that does not match the certificate, or an expired certificate.
    """

    def problem(key, message):
        return ConfigError(configPath, "{}.{}".format(keyPath, key), message)

    try:
        chain = _readCertificates(settings.cert)
    except (OSError, crypto.Error) as e:
        raise problem("cert", "cannot load {!r}: {}".format(settings.cert, e)) from None
    if not chain:
        raise problem("cert", "{!r} holds no PEM certificate".format(settings.cert))
    try:
        with open(settings.key, "rb") as f:
            key = crypto.load_privatekey(crypto.FILETYPE_PEM, f.read())
    except (OSError, crypto.Error) as e:
        raise problem("key", "cannot load {!r}: {}".format(settings.key, e)) from None
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.use_certificate(chain[0])
    context.use_privatekey(key)
    try:
        context.check_privatekey()
    except SSL.Error:
        raise problem(
            "key", "{!r} does not match the certificate {!r}".format(settings.key, settings.cert)
        ) from None
    leaf = chain[0].to_cryptography()
    now = datetime.datetime.now(datetime.timezone.utc)
    if leaf.not_valid_after_utc < now:
        raise problem(
            "cert",
            "{!r} expired on {}".format(settings.cert, leaf.not_valid_after_utc.isoformat()),
        )
    return ssl.CertificateOptions(
        privateKey=key,
        certificate=chain[0],
        extraCertChain=chain[1:],
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        acceptableProtocols=[b"http/1.1"],
    )


def backendPolicy(backend):
    """
    The client TLS settings for an C{https://} or C{wss://} backend: the
    system's trusted CAs and service-identity host name checking.

    @param backend: a L{proxyws.config.Backend}.
    @return: an C{IOpenSSLClientConnectionCreator}.
    """
    return ssl.optionsForClientTLS(backend.host)
