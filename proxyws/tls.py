"""
TLS with pyOpenSSL: listener contexts with SNI, and certificate checks for
C{https://} and C{wss://} backends.  Certificates and keys are read by
L{proxyws.certificates}.

Plain values come in (certificates, names, versions); pyOpenSSL and Twisted
objects come out.  Reading the configuration is not done here:
every function that can refuse its input takes the config file's name and a
key path, and raises L{ConfigError} with one readable line, naming the
sub-key at fault (the names are listed in L{SUBKEYS}).

L{serverContext} and L{BackendTLSPolicy} assemble these from a config, for
the service and for the checks run before it starts.

Listeners (L{serverContextFactory}) offer TLS 1.2 and 1.3, ALPN
C{http/1.1}, session resumption (tickets, and a session id context so that
resumption also works with client certificates), optional client
certificates, and pick a certificate by the server name the client asks for
(SNI).  Backends (L{backendCreator}) are verified against the system's
trusted CAs or a given CA file, with the host name checked by
service-identity.
"""

import ipaddress
import os

import attr
from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from zope.interface import implementer

from .certificates import SUBKEYS, _authorities, _problemAt, loadCertificate, selectCertificate
from .errors import ConfigError, HeadError
from .framing import refusal
from .logs import ProxyLogger
from .upstream import memberBackends

_log = ProxyLogger()

# Versions a listener may start from.  Anything older is refused: TLS 1.0
# and 1.1 are deprecated by RFC 8996 and OpenSSL 3 disables them anyway.
MINIMUM_VERSIONS = {
    "1.2": SSL.TLS1_2_VERSION,
    "1.3": SSL.TLS1_3_VERSION,
}
OBSOLETE_VERSIONS = ("1.0", "1.1")

# How a listener treats client certificates.  "optional" asks for one and
# fails the handshake only for a certificate that does not verify.
CLIENT_CERTIFICATE_MODES = {
    "none": SSL.VERIFY_NONE,
    "optional": SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE,
    "required": SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT | SSL.VERIFY_CLIENT_ONCE,
}

# The only application protocol proxyws speaks over TLS, offered to backends
# and chosen for clients that offer it.
ALPN_PROTOCOL = b"http/1.1"

# Sessions are cached (and tickets made) under this context: OpenSSL refuses
# to resume a session with client certificates unless it is set.
SESSION_ID_CONTEXT = b"proxyws"

_SERVER_OPTIONS = (
    SSL.OP_NO_COMPRESSION
    | SSL.OP_CIPHER_SERVER_PREFERENCE
    | getattr(SSL, "OP_NO_RENEGOTIATION", 0)
)

# Listeners.


@attr.s(frozen=True, slots=True)
class _ServerSettings:
    """
    What every context of one listener shares.

    @ivar minimumVersion: an C{SSL.TLS1_*_VERSION}.
    @ivar ciphers: the OpenSSL cipher string (bytes) for TLS up to 1.2, or
        L{None} for OpenSSL's default.
    @ivar verifyMode: C{SSL.VERIFY_*} flags for client certificates.
    @ivar authorities: the CAs client certificates must chain to.
    """

    minimumVersion = attr.ib()
    ciphers = attr.ib()
    verifyMode = attr.ib()
    authorities = attr.ib(converter=tuple)


def _selectProtocol(connection, offered):
    """
    ALPN: C{http/1.1} when offered; otherwise go on without ALPN rather than
    fail the handshake.
    """
    if ALPN_PROTOCOL in offered:
        return ALPN_PROTOCOL
    return SSL.NO_OVERLAPPING_PROTOCOLS


def _serverContext(certificate, settings, serverNameCallback):
    """
    @return: an C{SSL.Context} presenting C{certificate}, set up as
        C{settings} say.
    """
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(settings.minimumVersion)
    context.set_options(_SERVER_OPTIONS)
    if settings.ciphers is not None:
        context.set_cipher_list(settings.ciphers)
    context.use_certificate(certificate.chain[0])
    for intermediate in certificate.chain[1:]:
        context.add_extra_chain_cert(intermediate)
    context.use_privatekey(certificate.key)
    context.set_session_id(SESSION_ID_CONTEXT)
    context.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    context.set_alpn_select_callback(_selectProtocol)
    context.set_verify(settings.verifyMode)
    store = context.get_cert_store()
    for authority in settings.authorities:
        store.add_cert(crypto.X509.from_cryptography(authority))
        context.add_client_ca(authority)
    context.set_tlsext_servername_callback(serverNameCallback)
    return context


@implementer(IOpenSSLServerConnectionCreator)
class ServerContextFactory:
    """
    The TLS side of a listener, for L{TLSMemoryBIOFactory
    <twisted.protocols.tls.TLSMemoryBIOFactory>}: one C{SSL.Context} per
    certificate, all set up alike; a connection starts on the default
    certificate's context and moves to another when the client's server
    name (SNI) selects it.

    Session tickets and the session cache belong to the context a connection
    started on, always the default's, so resumption works whichever
    certificate was presented.

    @ivar certificates: the L{Certificate}s, in order of preference.
    @ivar default: the L{Certificate} for other names and no name.
    @ivar _contexts: L{Certificate} -> its C{SSL.Context}.
    """

    def __init__(self, certificates, default, settings):
        """
        @param settings: a L{_ServerSettings}.
        """
        self.certificates = tuple(certificates)
        self.default = default
        self._contexts = {
            c: _serverContext(c, settings, self._serverNameReceived)
            for c in self.certificates
        }

    def contextFor(self, serverName):
        """
        @param serverName: the name a client sent (text), or L{None}.
        @return: the C{SSL.Context} that presents the certificate for it.
        """
        return self._contexts[selectCertificate(self.certificates, self.default, serverName)]

    def _serverNameReceived(self, connection):
        """
        OpenSSL's SNI callback: switch C{connection} to the context of the
        certificate for the name the client sent.
        """
        name = connection.get_servername()
        context = self.contextFor(name.decode("ascii", "replace") if name else None)
        if context is not connection.get_context():
            connection.set_context(context)

    def serverConnectionForTLS(self, tlsProtocol):
        """
        @param tlsProtocol: the L{TLSMemoryBIOProtocol} of the connection.
        @return: an C{SSL.Connection} on the default certificate's context.
        """
        return SSL.Connection(self._contexts[self.default], None)

    def getContext(self):
        """
        For APIs that want an old-style context factory.

        @return: the default certificate's C{SSL.Context}; SNI still works.
        """
        return self._contexts[self.default]


def _minimumVersion(minimumVersion, problem):
    if minimumVersion in OBSOLETE_VERSIONS:
        raise problem(
            "{!r} is obsolete (RFC 8996) and refused; use '1.2' or '1.3'".format(minimumVersion)
        )
    if minimumVersion not in MINIMUM_VERSIONS:
        raise problem("{!r} is not a TLS version; use '1.2' or '1.3'".format(minimumVersion))
    return MINIMUM_VERSIONS[minimumVersion]


def _verifyMode(clientCertificate, clientCA, configPath, keyPath):
    if clientCertificate not in CLIENT_CERTIFICATE_MODES:
        raise _problemAt(configPath, keyPath, SUBKEYS["clientCertificate"])(
            "{!r} is not one of 'none', 'optional', 'required'".format(clientCertificate)
        )
    if clientCertificate != "none" and clientCA is None:
        raise _problemAt(configPath, keyPath, SUBKEYS["clientCA"])(
            "is required when {} is {!r}: give the CA file that signs client "
            "certificates".format(SUBKEYS["clientCertificate"], clientCertificate)
        )
    return CLIENT_CERTIFICATE_MODES[clientCertificate]


def serverContextFactory(
    certificates,
    default=None,
    minimumVersion="1.2",
    ciphers=None,
    clientCA=None,
    clientCertificate="none",
    configPath="proxyws.toml",
    keyPath="listen[0].tls",
):
    """
    The TLS side of a listener.

    @param certificates: L{Certificate}s to choose from by SNI, in order of
        preference.
    @param default: the L{Certificate} for clients that send no server name
        or one no certificate covers; the first of C{certificates} by
        default.  Added to C{certificates} if missing.
    @param minimumVersion: C{"1.2"} or C{"1.3"}.
    @param ciphers: an OpenSSL cipher string for TLS 1.2 (TLS 1.3 suites are
        OpenSSL's), or L{None} for OpenSSL's default.
    @param clientCA: the CA certificates client certificates must chain to:
        a PEM file name or loaded C{cryptography} certificates.
    @param clientCertificate: C{"none"} (not asked for), C{"optional"} (asked
        for, verified if given) or C{"required"} (handshake fails without).
    @param configPath: the config file, for messages.
    @param keyPath: where the listener's TLS settings are in the config;
        messages name the sub-key at fault (see L{SUBKEYS}).
    @return: a L{ServerContextFactory}, usable as the C{contextFactory} of
        C{TLSMemoryBIOFactory}.
    @raise ConfigError: for no certificate, an obsolete or unknown version, an
        invalid cipher string, an unknown client certificate mode, client
        certificates without a CA, or a CA file that cannot be loaded.
    """
    certificates = list(certificates)
    if not certificates and default is None:
        raise ConfigError(configPath, keyPath, "no certificate is given; give cert and key")
    default = default or certificates[0]
    if default not in certificates:
        certificates.append(default)
    version = _minimumVersion(
        minimumVersion, _problemAt(configPath, keyPath, SUBKEYS["minimumVersion"])
    )
    verifyMode = _verifyMode(clientCertificate, clientCA, configPath, keyPath)
    authorities = ()
    if clientCA is not None:
        where = "{}.{}".format(keyPath, SUBKEYS["clientCA"])
        authorities = _authorities(clientCA, configPath, where)
    cipherString = ciphers.encode("utf-8") if ciphers else None
    if cipherString is not None:
        _checkCiphers(cipherString, _problemAt(configPath, keyPath, SUBKEYS["ciphers"]))
    settings = _ServerSettings(version, cipherString, verifyMode, authorities)
    return ServerContextFactory(certificates, default, settings)


def _checkCiphers(cipherString, problem):
    try:
        SSL.Context(SSL.TLS_SERVER_METHOD).set_cipher_list(cipherString)
    except SSL.Error:
        raise problem(
            "{!r} is not an OpenSSL cipher string that selects any cipher; "
            "see 'openssl ciphers -v'".format(cipherString.decode("utf-8"))
        ) from None


def peerSubject(transport):
    """
    The subject of the client certificate verified on a connection.

    A listener only gets a client certificate when it asked for one, and
    then the handshake fails for a certificate that does not verify: a
    certificate present here has been verified.

    @param transport: the transport of a connection (the
        L{TLSMemoryBIOProtocol} for TLS).
    @return: the subject as an RFC 4514 string (C{"CN=alice,O=Example"}), or
        L{None} without TLS or client certificate.
    """
    getPeerCertificate = getattr(transport, "getPeerCertificate", None)
    if getPeerCertificate is None:
        return None
    try:
        certificate = getPeerCertificate()
    except SSL.Error:
        return None
    if certificate is None:
        return None
    return certificate.to_cryptography().subject.rfc4514_string()


# Backends.


def _isAddress(name):
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@implementer(IOpenSSLClientConnectionCreator)
class UnverifiedCreator:
    """
    Client connections that check nothing about the server's certificate,
    for backends configured with C{verify = false}.  The server name is
    still sent (SNI), since a backend may need it to choose its certificate.

    @ivar serverName: the name sent, or an IP address (then nothing is sent).
    @ivar _options: the L{ssl.CertificateOptions} giving the context.
    """

    def __init__(self, serverName, options):
        self.serverName = serverName
        self._options = options

    def clientConnectionForTLS(self, tlsProtocol):
        """
        @param tlsProtocol: the L{TLSMemoryBIOProtocol} of the connection.
        @return: an C{SSL.Connection}, with SNI set for a DNS name.
        """
        connection = SSL.Connection(self._options.getContext(), None)
        if not _isAddress(self.serverName):
            connection.set_tlsext_host_name(self.serverName.encode("idna"))
        return connection


def backendCreator(
    hostname,
    ca=None,
    serverName=None,
    verify=True,
    clientCertificate=None,
    configPath="proxyws.toml",
    keyPath="route[0].tls",
):
    """
    The TLS client settings for an C{https://} or C{wss://} backend, for
    C{wrapClientTLS}.  One creator serves any number of connections.

    @param hostname: the backend's host name or IP address.
    @param ca: the CAs the backend's certificate must chain to (a PEM file
        name or loaded C{cryptography} certificates); L{None} for the system's
        trusted CAs.
    @param serverName: the name to send (SNI) and to check the certificate
        against, instead of C{hostname}.  SNI is never sent for an IP
        address, which is checked against the certificate's IP addresses.
    @param verify: L{False} to check nothing at all (the caller should warn).
    @param clientCertificate: a L{Certificate} to present to backends that
        ask for one (mutual TLS), or L{None}.
    @param configPath: the config file, for messages.
    @param keyPath: where the backend's TLS settings are in the config.
    @return: an C{IOpenSSLClientConnectionCreator}.
    @raise ConfigError: for a CA file that cannot be loaded.
    """
    name = serverName or hostname
    options = {"raiseMinimumTo": ssl.TLSVersion.TLSv1_2}
    if clientCertificate is not None:
        # cryptography objects rather than optionsForClientTLS's
        # clientCertificate: pyOpenSSL deprecates its own X509 and PKey.
        options.update(
            privateKey=clientCertificate.key,
            certificate=clientCertificate.chain[0],
            extraCertChain=list(clientCertificate.chain[1:]),
        )
    if not verify:
        certificateOptions = ssl.CertificateOptions(
            verify=False, acceptableProtocols=[ALPN_PROTOCOL], **options
        )
        return UnverifiedCreator(name, certificateOptions)
    if ca is None:
        trustRoot = ssl.platformTrust()
    else:
        where = "{}.{}".format(keyPath, SUBKEYS["ca"])
        trustRoot = ssl.trustRootFromCertificates(
            [
                ssl.Certificate(crypto.X509.from_cryptography(c))
                for c in _authorities(ca, configPath, where)
            ]
        )
    return ssl.optionsForClientTLS(
        name,
        trustRoot=trustRoot,
        acceptableProtocols=[ALPN_PROTOCOL],
        extraCertificateOptions=options,
    )


# Assembly from a config: what the service and the start-up checks use.


def _passphrase(config, settings, keyPath):
    """
    The passphrase of a TLS key, from its file or environment variable.
    """
    if settings.passphraseFile:
        try:
            with open(settings.passphraseFile, "rb") as f:
                return f.read().rstrip(b"\r\n")
        except OSError as e:
            raise ConfigError(
                config.path,
                keyPath + ".key_passphrase_file",
                "cannot read {!r}: {}".format(settings.passphraseFile, e.strerror or e),
            ) from None
    if settings.passphraseEnv:
        value = os.environ.get(settings.passphraseEnv)
        if value is None:
            raise ConfigError(
                config.path,
                keyPath + ".key_passphrase_env",
                "the environment variable {!r} is not set".format(settings.passphraseEnv),
            )
        return value.encode("utf-8")
    return None


def _certificate(config, settings, keyPath):
    return loadCertificate(
        settings.cert,
        settings.key,
        _passphrase(config, settings, keyPath),
        config.path,
        keyPath,
    )


def serverContext(config, listener):
    """
    The TLS context factory of a listener: its own certificate, and the
    certificates of the C{[[host]]}s, chosen by SNI.

    @raise ConfigError: for a certificate or setting that cannot be used.
    """
    index = config.listeners.index(listener)
    keyPath = "listen[{}].tls".format(index)
    tls = listener.tls
    default = _certificate(config, tls, keyPath)
    certificates = [default] + [
        _certificate(config, host.tls, "host[{}].tls".format(host.index))
        for host in config.hosts
        if host.tls is not None
    ]
    return serverContextFactory(
        certificates,
        default,
        minimumVersion=tls.minVersion,
        ciphers=tls.ciphers,
        clientCA=tls.clientCA,
        clientCertificate=tls.clientCert,
        configPath=config.path,
        keyPath=keyPath,
    )


# What a plain HTTP request on a TLS port gets (nginx's words), and the
# first bytes that tell one: a TLS connection opens with a handshake record
# (0x16, or 0x80 and up for an SSLv2-style hello), an HTTP request with a
# method, in capitals.
PLAIN_HTTP = HeadError(400, "The plain HTTP request was sent to HTTPS port")
_METHOD_START = range(ord("A"), ord("Z") + 1)


class _ListenerTLSProtocol(BufferingTLSTransport):
    """
    TLS on a listener's connection, with an answer of its own to a client
    that speaks plain HTTP to it: 400 saying so, in plain text, and a close
    (an access-log line too), where TLS alone would close without a word.
    Only the first read is looked at.
    """

    _first = True

    def dataReceived(self, data):
        """
        Bytes from the client: TLS, unless the first ones are plain HTTP.
        """
        if self._first:
            self._first = False
            if data[0] in _METHOD_START:
                self._refusePlain()
                return
        BufferingTLSTransport.dataReceived(self, data)

    def _refusePlain(self):
        answer = refusal(PLAIN_HTTP)
        self.transport.write(answer)
        self.transport.loseConnection()
        refused = getattr(self.factory.wrappedFactory, "refused", None)
        if refused is not None:
            size = len(answer) - answer.index(b"\r\n\r\n") - 4
            refused(self.wrappedProtocol, PLAIN_HTTP.status, size)


class ListenerTLSFactory(TLSMemoryBIOFactory):
    """
    TLS for a listener's connections (see L{_ListenerTLSProtocol}).
    """

    protocol = _ListenerTLSProtocol

    def __init__(self, contextFactory, wrappedFactory):
        """
        @param contextFactory: the listener's L{ServerContextFactory}.
        @param wrappedFactory: the site.
        """
        TLSMemoryBIOFactory.__init__(self, contextFactory, False, wrappedFactory)


class BackendTLSPolicy:
    """
    The TLS client settings of each https:// and wss:// backend, made once:
    the routes' backends and every member of every upstream.
    """

    def __init__(self, config):
        self._creators = {}
        backends = [
            ("route[{}].backend_tls".format(route.index), route.backend)
            for route in config.routes
        ]
        backends += [(keyPath + ".url", backend) for keyPath, backend in memberBackends(config)]
        for keyPath, backend in backends:
            if backend.secure and backend.key not in self._creators:
                self._creators[backend.key] = _backendCreator(config, backend, keyPath)

    def __call__(self, backend):
        """
        @return: the connection creator for C{backend}.
        """
        return self._creators[backend.key]


def _backendCreator(config, backend, keyPath):
    """
    The connection creator of one https:// or wss:// backend, as its
    C{backend_tls} says.
    """
    settings = backend.tls
    if settings is None:
        return backendCreator(backend.host, configPath=config.path, keyPath=keyPath)
    if not settings.verify:
        _log.warn(
            "backend {url}: its TLS certificate is NOT checked (verify = false)",
            url=backend.url,
        )
    client = None
    if settings.cert:
        client = loadCertificate(settings.cert, settings.key, None, config.path, keyPath)
    return backendCreator(
        backend.host,
        ca=settings.ca,
        serverName=settings.serverName,
        verify=settings.verify,
        clientCertificate=client,
        configPath=config.path,
        keyPath=keyPath,
    )
