"""
Tests for L{proxyws.tls}: certificate loading and its messages, name
matching, listener contexts (SNI, versions, ALPN, resumption, client
certificates) and backend verification, over real TLS on 127.0.0.1 with
certificates made at test time (L{tests.certs}).

Listener tests talk to a Twisted echo server through Python's C{ssl} module
in a thread; backend tests connect Twisted clients built by
L{proxyws.tls.backendCreator} to an echo server built by
L{proxyws.tls.serverContextFactory}.
"""

import datetime
import os
import shutil
import socket
import ssl
import tempfile
from functools import partial

import attr
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
import proxyws.certificates as certificatesModule
from proxyws.config import parseConfig
from proxyws.tls import BackendTLSPolicy, serverContext
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from proxyws import certificates, tls
from proxyws.errors import ConfigError

from . import certs

UTC = datetime.timezone.utc

# Made once: key generation is quick, but there is no need to repeat it.
CA = certs.makeAuthority()

# A client context trusting CA (see certs.clientContext).
clientContext = partial(certs.clientContext, authority=CA)
OTHER_CA = certs.makeAuthority("another CA")
CLIENT = certs.makeCertificate(CA, ["alice"], client=True)
CLIENT_SUBJECT = "CN=alice,O=proxyws tests"


class FilesMixin:
    """
    A temporary directory per test, removed in cleanup, and shortcuts to
    write and load certificates in it.
    """

    def setUp(self):
        self.directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.directory, True)

    def write(self, filename, data):
        """
        @return: the path of C{filename}, written with C{data}.
        """
        return certs.writeFile(self.directory, filename, data)

    def pair(self, stem, pair, chain=(), passphrase=None):
        """
        @return: C{(cert path, key path)} of C{pair} written as C{stem}.
        """
        return certs.writePair(self.directory, stem, pair, chain, passphrase)

    def load(self, pair, stem=None, chain=()):
        """
        @return: C{pair} written and loaded as a L{certificates.Certificate}.
        """
        stem = stem or pair.certificate.subject.rfc4514_string().replace("*", "star")
        return certificates.loadCertificate(*self.pair(stem, pair, chain))

    def caFile(self, *authorities):
        """
        @return: the path of a PEM file of C{authorities} (L{CA} by default).
        """
        authorities = authorities or (CA,)
        return self.write(
            "ca%d.pem" % len(os.listdir(self.directory)),
            certs.certificatePem(*[a.certificate for a in authorities]),
        )


class NameTests(SynchronousTestCase):
    """
    The pure parts: which names a certificate covers and which certificate
    a server name selects.
    """

    def test_nameMatches(self):
        """
        Exact names match without regard to case or a final dot; a wildcard
        covers exactly one label.
        """
        table = [
            ("a.example.com", "a.example.com", True),
            ("a.example.com", "A.Example.COM", True),
            ("a.example.com", "a.example.com.", True),
            ("a.example.com", "b.example.com", False),
            ("*.example.com", "a.example.com", True),
            ("*.example.com", "A.EXAMPLE.com", True),
            ("*.example.com", "example.com", False),
            ("*.example.com", "a.b.example.com", False),
            ("*.example.com", ".example.com", False),
            ("*.example.com", "a.example.org", False),
            ("a.*.com", "a.b.com", False),
        ]
        for pattern, name, expected in table:
            self.assertEqual(certificates.nameMatches(pattern, name), expected, (pattern, name))

    def fake(self, *names):
        """
        @return: a L{certificates.Certificate} with only names.
        """
        return certificates.Certificate((), None, names)

    def test_selectCertificate(self):
        """
        An exact name wins over a wildcard whatever the order; a wildcard
        wins over the default; no name or an unknown name gets the default.
        """
        wild = self.fake("*.example.com")
        exact = self.fake("www.example.com", "example.com")
        other = self.fake("other.org")
        default = self.fake("default.net")
        available = [wild, exact, other, default]
        table = [
            ("www.example.com", exact),
            ("WWW.example.com", exact),
            ("example.com", exact),
            ("api.example.com", wild),
            ("other.org", other),
            ("a.api.example.com", default),
            ("unknown.test", default),
            ("", default),
            (None, default),
        ]
        for name, expected in table:
            self.assertIs(certificates.selectCertificate(available, default, name), expected, name)

    def test_namesFromSubjectAltName(self):
        """
        DNS names and IP addresses come from subjectAltName, in lower case;
        the CN is then ignored.
        """
        pair = certs.makeCertificate(
            CA, ["Www.Example.com", "*.example.com", "127.0.0.1", "::1"], commonName="cn.test"
        )
        self.assertEqual(
            certificates.certificateNames(pair.certificate),
            (("www.example.com", "*.example.com"), ("127.0.0.1", "::1")),
        )

    def test_namesFromCommonName(self):
        """
        Without subjectAltName, the CN is the name.
        """
        pair = certs.makeCertificate(CA, ["Legacy.Test"], subjectAltName=False)
        self.assertEqual(certificates.certificateNames(pair.certificate), (("legacy.test",), ()))


class LoadCertificateTests(FilesMixin, SynchronousTestCase):
    """
    L{certificates.loadCertificate} reads PEM files and refuses, with one exact line,
    anything a listener could not use.
    """

    def assertProblem(self, expected, *args, **kwargs):
        """
        L{certificates.loadCertificate} with these arguments raises a L{ConfigError}
        whose text is C{expected} (C{%(c)s}, C{%(k)s} the paths' reprs).
        """
        kwargs.setdefault("configPath", "proxyws.toml")
        kwargs.setdefault("keyPathInConfig", "listen[0].tls")
        error = self.assertRaises(ConfigError, certificates.loadCertificate, *args, **kwargs)
        self.assertEqual(str(error), expected % {"c": repr(args[0]), "k": repr(args[1])})

    def test_load(self):
        """
        A certificate, its chain and its key are loaded with the names the
        certificate is valid for.
        """
        intermediate = certs.makeAuthority("intermediate", issuer=CA)
        pair = certs.makeCertificate(intermediate, ["a.test", "*.b.test", "10.0.0.1"])
        certificate = self.load(pair, chain=[intermediate.certificate])
        self.assertEqual(
            certificate.chain, (pair.certificate, intermediate.certificate)
        )
        self.assertEqual(certificate.names, ("a.test", "*.b.test"))
        self.assertEqual(certificate.addresses, ("10.0.0.1",))
        self.assertEqual(certificate.subject, "CN=a.test,O=proxyws tests")
        self.assertEqual(certificate.key.private_numbers(), pair.key.private_numbers())
        private = certificate.privateCertificate()
        self.assertEqual(private.original.to_cryptography(), pair.certificate)
        self.assertEqual(
            private.privateKey.original.to_cryptography_key().private_numbers(),
            pair.key.private_numbers(),
        )

    def test_combinedFile(self):
        """
        The certificate and the key may be in one file.
        """
        pair = certs.makeCertificate(CA, ["a.test"])
        path = self.write(
            "both.pem", certs.certificatePem(pair.certificate) + certs.keyPem(pair.key)
        )
        self.assertEqual(certificates.loadCertificate(path, path).names, ("a.test",))

    def test_passphrase(self):
        """
        An encrypted key is decrypted with the passphrase, given as text or
        bytes, in PKCS#8 or the traditional OpenSSL format.
        """
        pair = certs.makeCertificate(CA, ["a.test"])
        cert, key = self.pair("a", pair, passphrase=b"s3cret")
        traditional = self.write("t.key", certs.keyPem(pair.key, b"s3cret", traditional=True))
        for path, passphrase in [(key, "s3cret"), (key, b"s3cret"), (traditional, "s3cret")]:
            loaded = certificates.loadCertificate(cert, path, passphrase)
            self.assertEqual(loaded.key.private_numbers(), pair.key.private_numbers())

    def test_passphraseForPlainKey(self):
        """
        A passphrase for a key that is not encrypted is ignored.
        """
        cert, key = self.pair("a", certs.makeCertificate(CA, ["a.test"]))
        self.assertEqual(certificates.loadCertificate(cert, key, "unused").names, ("a.test",))

    def test_missingFiles(self):
        """
        A missing certificate or key file is named with its key path.
        """
        cert, key = self.pair("a", certs.makeCertificate(CA, ["a.test"]))
        missing = os.path.join(self.directory, "missing.pem")
        self.assertProblem(
            "proxyws.toml: listen[0].tls.cert: cannot read %(c)s: no such file", missing, key
        )
        self.assertProblem(
            "proxyws.toml: listen[0].tls.key: cannot read %(k)s: no such file", cert, missing
        )

    def test_directory(self):
        """
        A directory in place of a file is said to be one.
        """
        cert, key = self.pair("a", certs.makeCertificate(CA, ["a.test"]))
        self.assertProblem(
            "proxyws.toml: listen[0].tls.cert: cannot read %(c)s: is a directory",
            self.directory, key,
        )

    def test_unreadable(self):
        """
        A file that cannot be read is said to be so.
        """
        cert, key = self.pair("a", certs.makeCertificate(CA, ["a.test"]))
        # Permissions do not stop root, who runs these tests in CI: make
        # opening the key fail as it would for another user.
        realOpen = open

        def deniedOpen(path, *args, **kwargs):
            if path == key:
                raise PermissionError(13, "Permission denied", path)
            return realOpen(path, *args, **kwargs)

        certificatesModule.open = deniedOpen
        self.addCleanup(delattr, certificatesModule, "open")
        self.assertProblem(
            "proxyws.toml: listen[0].tls.key: cannot read %(k)s: permission denied", cert, key
        )

    def test_noCertificate(self):
        """
        A certificate file without a certificate (a key, or nothing) is
        refused; so is a certificate PEM block that does not parse.
        """
        cert, key = self.pair("a", certs.makeCertificate(CA, ["a.test"]))
        empty = self.write("empty.pem", b"")
        self.assertProblem(
            "proxyws.toml: listen[0].tls.cert: %(c)s holds no PEM certificate", key, key
        )
        self.assertProblem(
            "proxyws.toml: listen[0].tls.cert: %(c)s holds no PEM certificate", empty, key
        )
        broken = self.write(
            "broken.pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        )
        self.assertProblem(
            "proxyws.toml: listen[0].tls.cert: %(c)s holds a PEM certificate that "
            "cannot be parsed",
            broken, key,
        )

    def test_noKey(self):
        """
        A key file without a key is refused; so is a key that does not parse.
        """
        cert, key = self.pair("a", certs.makeCertificate(CA, ["a.test"]))
        self.assertProblem(
            "proxyws.toml: listen[0].tls.key: %(k)s holds no PEM private key", cert, cert
        )
        broken = self.write(
            "broken.key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )
        self.assertProblem(
            "proxyws.toml: listen[0].tls.key: %(k)s holds a PEM private key that "
            "cannot be parsed",
            cert, broken,
        )

    def test_keyMismatch(self):
        """
        A key that is not the certificate's is refused.
        """
        cert, _ = self.pair("a", certs.makeCertificate(CA, ["a.test"]))
        _, key = self.pair("b", certs.makeCertificate(CA, ["b.test"]))
        self.assertProblem(
            "proxyws.toml: listen[0].tls.key: %(k)s does not match the certificate %(c)s",
            cert, key,
        )

    def test_expired(self):
        """
        An expired certificate is refused with the time it expired.
        """
        pair = certs.makeCertificate(
            CA, ["old.test"],
            notBefore=datetime.datetime(2019, 1, 1, tzinfo=UTC),
            notAfter=datetime.datetime(2020, 1, 1, tzinfo=UTC),
        )
        cert, key = self.pair("old", pair)
        self.assertProblem(
            "conf/p.toml: listen[3].tls.cert: %(c)s expired on 2020-01-01T00:00:00+00:00",
            cert, key, configPath="conf/p.toml", keyPathInConfig="listen[3].tls",
        )

    def test_notYetValid(self):
        """
        A certificate that is not valid yet is refused with the time it will
        be; C{now} sets the time of the check.
        """
        start = datetime.datetime(2090, 1, 1, tzinfo=UTC)
        pair = certs.makeCertificate(
            CA, ["new.test"], notBefore=start, notAfter=datetime.datetime(2091, 1, 1, tzinfo=UTC)
        )
        cert, key = self.pair("new", pair)
        self.assertProblem(
            "proxyws.toml: listen[0].tls.cert: %(c)s is not valid until "
            "2090-01-01T00:00:00+00:00",
            cert, key,
        )
        later = start + datetime.timedelta(days=1)
        self.assertEqual(certificates.loadCertificate(cert, key, now=later).names, ("new.test",))

    def test_refusedByOpenSSL(self):
        """
        A certificate OpenSSL will not use at its security level (here a
        1024-bit RSA key) is refused with OpenSSL's reason.
        """
        key = rsa.generate_private_key(65537, 1024)
        cert, key = self.pair("weak", certs.makeCertificate(CA, ["weak.test"], key=key))
        self.assertProblem(
            "proxyws.toml: listen[0].tls.cert: %(c)s is refused by OpenSSL: ee key too small",
            cert, key,
        )

    def test_encryptedWithoutPassphrase(self):
        """
        An encrypted key without a passphrase is refused.
        """
        cert, key = self.pair("a", certs.makeCertificate(CA, ["a.test"]), passphrase=b"pw")
        self.assertProblem(
            "proxyws.toml: listen[0].tls.key: %(k)s is encrypted and no passphrase was "
            "given; set key_passphrase_file or key_passphrase_env",
            cert, key,
        )
        self.assertProblem(
            "proxyws.toml: listen[0].tls.key: %(k)s is encrypted and no passphrase was "
            "given; set key_passphrase_file or key_passphrase_env",
            cert, key, passphrase="",
        )

    def test_wrongPassphrase(self):
        """
        A passphrase that does not decrypt the key is refused, for both
        encrypted formats.
        """
        pair = certs.makeCertificate(CA, ["a.test"])
        cert, key = self.pair("a", pair, passphrase=b"pw")
        traditional = self.write("t.key", certs.keyPem(pair.key, b"pw", traditional=True))
        for path in (key, traditional):
            self.assertProblem(
                "proxyws.toml: listen[0].tls.key: the passphrase given does not decrypt %(k)s",
                cert, path, passphrase="wrong",
            )


class SettingsTests(FilesMixin, SynchronousTestCase):
    """
    L{tls.serverContextFactory} and L{tls.backendCreator} refuse settings
    they cannot honour, with one exact line; the old entry points still
    work.
    """

    def setUp(self):
        FilesMixin.setUp(self)
        self.certificate = self.load(certs.makeCertificate(CA, ["a.test"]))

    def assertProblem(self, expected, function, *args, **kwargs):
        """
        C{function(*args, **kwargs)} raises a L{ConfigError} reading
        C{expected}.
        """
        error = self.assertRaises(ConfigError, function, *args, **kwargs)
        self.assertEqual(str(error), expected)

    def server(self, **kwargs):
        """
        Build a listener context factory for L{certificate}, at key path
        C{listen[1].tls}.
        """
        return tls.serverContextFactory(
            [self.certificate], self.certificate, configPath="p.toml",
            keyPath="listen[1].tls", **kwargs
        )

    def test_interfaces(self):
        """
        The listener factory provides C{IOpenSSLServerConnectionCreator};
        backend creators, verified or not, C{IOpenSSLClientConnectionCreator}.
        """
        self.assertTrue(verifyObject(IOpenSSLServerConnectionCreator, self.server()))
        for creator in [
            tls.backendCreator("a.test", ca=self.caFile()),
            tls.backendCreator("a.test", verify=False),
            tls.backendCreator("a.test", verify=False, clientCertificate=self.certificate),
            tls.backendCreator("a.test", ca=self.caFile(), clientCertificate=self.certificate),
        ]:
            self.assertTrue(verifyObject(IOpenSSLClientConnectionCreator, creator))

    def test_defaultIsAdded(self):
        """
        The default certificate need not be among the others; without a
        default, the first certificate is.
        """
        other = self.load(certs.makeCertificate(CA, ["b.test"]))
        factory = tls.serverContextFactory([other], self.certificate)
        self.assertEqual(factory.certificates, (other, self.certificate))
        self.assertIs(tls.serverContextFactory([other, self.certificate]).default, other)

    def test_noCertificate(self):
        """
        A listener needs a certificate.
        """
        self.assertProblem(
            "p.toml: listen[1].tls: no certificate is given; give cert and key",
            tls.serverContextFactory, [], configPath="p.toml", keyPath="listen[1].tls",
        )

    def test_obsoleteVersions(self):
        """
        TLS 1.0 and 1.1 are refused as obsolete; other values as unknown.
        """
        for version in ("1.0", "1.1"):
            self.assertProblem(
                "p.toml: listen[1].tls.min_version: %r is obsolete (RFC 8996) and "
                "refused; use '1.2' or '1.3'" % (version,),
                self.server, minimumVersion=version,
            )
        self.assertProblem(
            "p.toml: listen[1].tls.min_version: '2.0' is not a TLS version; "
            "use '1.2' or '1.3'",
            self.server, minimumVersion="2.0",
        )

    def test_invalidCiphers(self):
        """
        A cipher string that selects nothing is refused.
        """
        self.assertProblem(
            "p.toml: listen[1].tls.ciphers: 'NOPE-NOTHING' is not an OpenSSL cipher "
            "string that selects any cipher; see 'openssl ciphers -v'",
            self.server, ciphers="NOPE-NOTHING",
        )

    def test_clientCertificateMode(self):
        """
        The client certificate mode is one of three words.
        """
        self.assertProblem(
            "p.toml: listen[1].tls.client_cert: 'maybe' is not one of 'none', "
            "'optional', 'required'",
            self.server, clientCertificate="maybe",
        )

    def test_clientCertificateNeedsCA(self):
        """
        Asking for client certificates needs the CA that signs them.
        """
        for mode in ("optional", "required"):
            self.assertProblem(
                "p.toml: listen[1].tls.client_ca: is required when client_cert is %r: "
                "give the CA file that signs client certificates" % (mode,),
                self.server, clientCertificate=mode,
            )

    def test_clientCAFile(self):
        """
        A client CA file that is missing or holds no certificate is named.
        """
        missing = os.path.join(self.directory, "nope.pem")
        self.assertProblem(
            "p.toml: listen[1].tls.client_ca: cannot read %r: no such file" % (missing,),
            self.server, clientCA=missing, clientCertificate="required",
        )
        empty = self.write("empty.pem", b"nothing here\n")
        self.assertProblem(
            "p.toml: listen[1].tls.client_ca: %r holds no PEM certificate" % (empty,),
            self.server, clientCA=empty, clientCertificate="optional",
        )

    def test_backendCAFile(self):
        """
        A backend CA file that is missing is named.
        """
        missing = os.path.join(self.directory, "nope.pem")
        self.assertProblem(
            "p.toml: route[4].tls.ca: cannot read %r: no such file" % (missing,),
            tls.backendCreator, "a.test", ca=missing, configPath="p.toml",
            keyPath="route[4].tls",
        )

    def test_loadAuthorities(self):
        """
        A CA file may hold several certificates.
        """
        path = self.caFile(CA, OTHER_CA)
        self.assertEqual(
            certificates.loadAuthorities(path), (CA.certificate, OTHER_CA.certificate)
        )

    def test_serverContext(self):
        """
        The service builds a listener factory from a config's TLS settings,
        with the same messages.
        """
        cert, key = self.pair("s", certs.makeCertificate(CA, ["s.test"]))
        missing = os.path.join(self.directory, "nope.pem")

        def config(keyFile):
            return parseConfig(
                '[[listen]]\naddress = "127.0.0.1"\nport = 0\n'
                "tls = {{ cert = {!r}, key = {!r} }}\n".format(cert, keyFile),
                "p.toml",
            )

        good = config(key)
        factory = serverContext(good, good.listeners[0])
        self.assertTrue(verifyObject(IOpenSSLServerConnectionCreator, factory))
        self.assertEqual(factory.default.names, ("s.test",))
        bad = config(missing)
        self.assertProblem(
            "p.toml: listen[0].tls.key: cannot read %r: no such file" % (missing,),
            serverContext, bad, bad.listeners[0],
        )

    def test_backendPolicy(self):
        """
        The service gives a client creator per backend, reused.
        """
        config = parseConfig(
            '[[listen]]\naddress = "127.0.0.1"\nport = 0\n'
            '[[route]]\npath = "/"\nbackend = "https://a.test/"\n'
            '[[route]]\npath = "/b/"\nbackend = "https://a.test/b/"\n',
            "p.toml",
        )
        policy = BackendTLSPolicy(config)
        creator = policy(config.routes[0].backend)
        self.assertTrue(verifyObject(IOpenSSLClientConnectionCreator, creator))
        self.assertIs(policy(config.routes[1].backend), creator)

    def test_peerSubjectWithoutTLS(self):
        """
        A transport without TLS has no peer subject.
        """
        self.assertIsNone(tls.peerSubject(StringTransport()))


class Echo(Protocol):
    """
    Echoes; notes what the server saw of the TLS connection on its factory.
    """

    def dataReceived(self, data):
        """
        Note the peer's subject and the server name, and echo.
        """
        self.factory.subjects.append(tls.peerSubject(self.transport))
        self.factory.serverNames.append(self.transport.getHandle().get_servername())
        self.transport.write(data)


class EchoFactory(Factory):
    """
    Makes L{Echo}s.

    @ivar subjects: the client subject seen by each echo.
    @ivar serverNames: the SNI name seen by each echo (bytes or L{None}).
    """

    protocol = Echo
    noisy = False

    def __init__(self):
        self.subjects = []
        self.serverNames = []


@attr.s
class Outcome:
    """
    What a client saw of one connection.

    @ivar error: the exception, for a failed connection (then nothing else).
    @ivar echoed: the bytes echoed back.
    @ivar peer: the server's C{cryptography} certificate.
    """

    error = attr.ib(default=None)
    echoed = attr.ib(default=None)
    peer = attr.ib(default=None)
    version = attr.ib(default=None)
    alpn = attr.ib(default=None)
    cipher = attr.ib(default=None)
    reused = attr.ib(default=None)
    session = attr.ib(default=None, repr=False)

    @property
    def commonName(self):
        """
        The CN of the server's certificate.
        """
        return self.peer.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value


def _exchange(port, context, serverName, session):
    """
    In a thread: connect, shake hands, have C{b"ping"} echoed.

    @return: an L{Outcome}.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=serverName, session=session) as s:
                s.sendall(b"ping")
                echoed = b""
                while len(echoed) < 4:
                    chunk = s.recv(4 - len(echoed))
                    if not chunk:
                        break
                    echoed += chunk
                return Outcome(
                    echoed=echoed,
                    peer=x509.load_der_x509_certificate(s.getpeercert(True)),
                    version=s.version(),
                    alpn=s.selected_alpn_protocol(),
                    cipher=s.cipher()[0],
                    reused=s.session_reused,
                    session=s.session,
                )
        except (ssl.SSLError, OSError) as e:
            return Outcome(error=e)


class ServerMixin(FilesMixin):
    """
    Start TLS echo servers on 127.0.0.1, and stop them (and wait for their
    connections to close) in cleanup.
    """

    def listen(self, contextFactory):
        """
        Serve L{Echo} behind C{contextFactory} on 127.0.0.1.

        @return: C{(port number, the L{EchoFactory})}.
        """
        from twisted.internet import reactor

        echo = EchoFactory()
        wrapper = TLSMemoryBIOFactory(contextFactory, False, echo)
        port = reactor.listenTCP(0, wrapper, interface="127.0.0.1")
        self.addCleanup(self._drain, wrapper)
        self.addCleanup(port.stopListening)
        return port.getHost().port, echo

    @inlineCallbacks
    def _drain(self, wrapper):
        from twisted.internet import reactor

        for _ in range(500):
            if not wrapper.protocols:
                return
            yield task.deferLater(reactor, 0.01, lambda: None)
        for protocol in list(wrapper.protocols):
            protocol.transport.abortConnection()


class ListenerTests(ServerMixin, TestCase):
    """
    Listeners built by L{tls.serverContextFactory}, met by Python's C{ssl}
    clients.
    """

    def setUp(self):
        ServerMixin.setUp(self)
        self.a = self.load(certs.makeCertificate(CA, ["a.test", "www.a.test"]), "a")
        self.wild = self.load(certs.makeCertificate(CA, ["*.wild.test"]), "wild")
        self.default = self.load(certs.makeCertificate(CA, ["default.test"]), "default")
        self.clientPaths = self.pair("client", CLIENT)

    def serve(self, certificates=None, **kwargs):
        """
        Listen with L{tls.serverContextFactory}; by default the three
        certificates of C{setUp}, C{default.test} the default.

        @return: the port number; the L{EchoFactory} is C{self.echo}.
        """
        if certificates is None:
            certificates = [self.a, self.wild, self.default]
        port, self.echo = self.listen(
            tls.serverContextFactory(certificates, certificates[-1], **kwargs)
        )
        return port

    def connect(self, port, context=None, serverName="a.test", session=None):
        """
        Have a Python C{ssl} client connect in a thread.

        @return: a L{Deferred} firing with an L{Outcome}.
        """
        return deferToThread(
            _exchange, port, context or clientContext(), serverName, session
        )

    def assertWorks(self, outcome):
        """
        The connection was made and echoed.
        """
        self.assertIsNone(outcome.error)
        self.assertEqual(outcome.echoed, b"ping")

    def assertRefused(self, outcome, reason=None):
        """
        The connection failed, for C{reason} (an OpenSSL reason code) if
        given.
        """
        self.assertIsInstance(outcome.error, ssl.SSLError)
        if reason is not None:
            self.assertEqual(outcome.error.reason, reason)

    @inlineCallbacks
    def test_serverNameIndication(self):
        """
        The certificate presented is the one that names the server name the
        client sent, exactly or by wildcard; another name or none gets the
        default.
        """
        port = self.serve()
        table = [
            ("a.test", "a.test"),
            ("WWW.A.TEST", "a.test"),
            ("x.wild.test", "*.wild.test"),
            ("y.x.wild.test", "default.test"),
            ("unknown.test", "default.test"),
            ("default.test", "default.test"),
            (None, "default.test"),
        ]
        for name, commonName in table:
            outcome = yield self.connect(port, serverName=name)
            self.assertWorks(outcome)
            self.assertEqual(outcome.commonName, commonName, name)

    @inlineCallbacks
    def test_chain(self):
        """
        Intermediate certificates are sent: a client that trusts only the
        root verifies the chain.
        """
        intermediate = certs.makeAuthority("intermediate", issuer=CA)
        leaf = self.load(
            certs.makeCertificate(intermediate, ["chain.test"]), "chain",
            chain=[intermediate.certificate],
        )
        port = self.serve([leaf])
        outcome = yield self.connect(port, serverName="chain.test")
        self.assertWorks(outcome)
        self.assertEqual(outcome.commonName, "chain.test")

    @inlineCallbacks
    def test_versions(self):
        """
        TLS 1.2 and 1.3 are offered; a TLS 1.1 client is refused by the
        server (a protocol version alert).
        """
        port = self.serve()
        for version, name in [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (None, "TLSv1.3")]:
            outcome = yield self.connect(port, clientContext(maximum=version))
            self.assertWorks(outcome)
            self.assertEqual(outcome.version, name)
        old = clientContext(maximum=ssl.TLSVersion.TLSv1_1, minimum=ssl.TLSVersion.TLSv1)
        outcome = yield self.connect(port, old)
        self.assertRefused(outcome, "TLSV1_ALERT_PROTOCOL_VERSION")

    @inlineCallbacks
    def test_minimumVersion13(self):
        """
        With C{minimumVersion="1.3"}, a TLS 1.2 client is refused.
        """
        port = self.serve(minimumVersion="1.3")
        outcome = yield self.connect(port, clientContext(maximum=ssl.TLSVersion.TLSv1_2))
        self.assertRefused(outcome, "TLSV1_ALERT_PROTOCOL_VERSION")
        outcome = yield self.connect(port)
        self.assertWorks(outcome)
        self.assertEqual(outcome.version, "TLSv1.3")

    @inlineCallbacks
    def test_alpn(self):
        """
        C{http/1.1} is chosen when offered; a client that offers no ALPN, or
        only other protocols, still connects, without ALPN.
        """
        port = self.serve()
        table = [
            (("h2", "http/1.1"), "http/1.1"),
            (("http/1.1",), "http/1.1"),
            ((), None),
            (("h2",), None),
        ]
        for offered, chosen in table:
            outcome = yield self.connect(port, clientContext(alpn=offered))
            self.assertWorks(outcome)
            self.assertEqual(outcome.alpn, chosen, offered)

    @inlineCallbacks
    def test_ciphers(self):
        """
        The cipher string limits TLS 1.2 ciphers: a client offering only
        others is refused.
        """
        port = self.serve(ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
        tls12 = ssl.TLSVersion.TLSv1_2
        outcome = yield self.connect(
            port, clientContext(maximum=tls12, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
        )
        self.assertWorks(outcome)
        self.assertEqual(outcome.cipher, "ECDHE-ECDSA-AES128-GCM-SHA256")
        outcome = yield self.connect(
            port, clientContext(maximum=tls12, ciphers="ECDHE-ECDSA-AES256-GCM-SHA384")
        )
        self.assertRefused(outcome, "SSLV3_ALERT_HANDSHAKE_FAILURE")

    @inlineCallbacks
    def assertResumes(self, port, context, serverName="a.test", commonName="a.test"):
        """
        A second connection with the session of a first is resumed.
        """
        first = yield self.connect(port, context, serverName)
        self.assertWorks(first)
        self.assertFalse(first.reused)
        second = yield self.connect(port, context, serverName, session=first.session)
        self.assertWorks(second)
        self.assertTrue(second.reused)
        self.assertEqual(second.commonName, commonName)

    @inlineCallbacks
    def test_resumption(self):
        """
        Sessions are resumed with TLS 1.2 and 1.3, for the default
        certificate and for one chosen by SNI.
        """
        port = self.serve()
        for maximum in (ssl.TLSVersion.TLSv1_2, None):
            context = clientContext(maximum=maximum)
            yield self.assertResumes(port, context)
            yield self.assertResumes(port, context, "x.wild.test", "*.wild.test")
            yield self.assertResumes(port, context, None, "default.test")

    @inlineCallbacks
    def test_resumptionWithClientCertificates(self):
        """
        Sessions are resumed when client certificates are required (this
        needs the session id context), and the resumed connection still
        knows the client's subject.
        """
        port = self.serve(clientCA=self.caFile(), clientCertificate="required")
        for maximum in (ssl.TLSVersion.TLSv1_2, None):
            yield self.assertResumes(
                port, clientContext(maximum=maximum, certificate=self.clientPaths)
            )
        self.assertEqual(self.echo.subjects, [CLIENT_SUBJECT] * 4)

    @inlineCallbacks
    def test_clientCertificateRequired(self):
        """
        With client certificates required, a client without one is refused,
        at TLS 1.2 and 1.3; one with a certificate from the CA gets through,
        and L{tls.peerSubject} gives its subject.
        """
        port = self.serve(clientCA=self.caFile(), clientCertificate="required")
        for maximum in (ssl.TLSVersion.TLSv1_2, None):
            outcome = yield self.connect(port, clientContext(maximum=maximum))
            self.assertRefused(outcome)
        outcome = yield self.connect(port, clientContext(certificate=self.clientPaths))
        self.assertWorks(outcome)
        self.assertEqual(self.echo.subjects, [CLIENT_SUBJECT])

    @inlineCallbacks
    def test_clientCertificateOptional(self):
        """
        With optional client certificates, a client without one gets
        through, with no subject; one with a certificate from another CA is
        refused.
        """
        stranger = self.pair("stranger", certs.makeCertificate(OTHER_CA, ["bob"], client=True))
        port = self.serve(clientCA=self.caFile(), clientCertificate="optional")
        outcome = yield self.connect(port)
        self.assertWorks(outcome)
        outcome = yield self.connect(port, clientContext(certificate=self.clientPaths))
        self.assertWorks(outcome)
        outcome = yield self.connect(port, clientContext(certificate=stranger))
        self.assertRefused(outcome)
        self.assertEqual(self.echo.subjects, [None, CLIENT_SUBJECT])

    @inlineCallbacks
    def test_noClientCertificateAsked(self):
        """
        Without client certificate checking, a client's certificate is not
        asked for, and no subject is reported.
        """
        port = self.serve()
        outcome = yield self.connect(port, clientContext(certificate=self.clientPaths))
        self.assertWorks(outcome)
        self.assertEqual(self.echo.subjects, [None])

    @inlineCallbacks
    def test_serverContext(self):
        """
        The service's entry point serves TLS too, with the config's
        passphrase, minimum version and client certificates.
        """
        pair = certs.makeCertificate(CA, ["s.test"])
        cert, key = self.pair("s", pair, passphrase=b"pw")
        os.environ["PROXYWS_TEST_TLS_PASSPHRASE"] = "pw"
        self.addCleanup(os.environ.pop, "PROXYWS_TEST_TLS_PASSPHRASE")
        config = parseConfig(
            '[[listen]]\naddress = "127.0.0.1"\nport = 0\n'
            "tls = {{ cert = {!r}, key = {!r}, min_version = \"1.3\", client_ca = {!r}, "
            'client_cert = "required", key_passphrase_env = "PROXYWS_TEST_TLS_PASSPHRASE" }}\n'
            .format(cert, key, self.caFile()),
            "p.toml",
        )
        port, echo = self.listen(serverContext(config, config.listeners[0]))
        outcome = yield self.connect(
            port, clientContext(certificate=self.clientPaths), serverName="s.test"
        )
        self.assertWorks(outcome)
        self.assertEqual(
            (outcome.commonName, outcome.alpn, outcome.version),
            ("s.test", "http/1.1", "TLSv1.3"),
        )
        self.assertEqual(echo.subjects, [CLIENT_SUBJECT])
        outcome = yield self.connect(port, clientContext(maximum=ssl.TLSVersion.TLSv1_2))
        self.assertRefused(outcome, "TLSV1_ALERT_PROTOCOL_VERSION")


class Pinger(Protocol):
    """
    Sends C{b"ping"} and hangs up once it comes back.

    @ivar done: fires with C{(bytes received, reason)} when the connection
        is lost.
    """

    def __init__(self):
        self.received = b""
        self.done = Deferred()

    def connectionMade(self):
        """
        Send the ping (kept until the handshake is done).
        """
        self.transport.write(b"ping")

    def dataReceived(self, data):
        """
        Hang up once the ping is back.
        """
        self.received += data
        if self.received == b"ping":
            self.transport.loseConnection()

    def connectionLost(self, reason):
        """
        Report.
        """
        self.done.callback((self.received, reason))


class BackendTests(ServerMixin, TestCase):
    """
    Creators from L{tls.backendCreator}, connecting to TLS echo servers.
    """

    def setUp(self):
        ServerMixin.setUp(self)
        self.ca = self.caFile()

    def backend(self, pair, **kwargs):
        """
        Serve with C{pair}'s certificate.

        @return: the port number; the L{EchoFactory} is C{self.echo}.
        """
        certificate = self.load(pair, "backend")
        port, self.echo = self.listen(tls.serverContextFactory([certificate], **kwargs))
        return port

    @inlineCallbacks
    def ping(self, port, creator):
        """
        Connect through C{creator}, ping.

        @return: a L{Deferred} firing with C{(bytes echoed, reason)}.
        """
        from twisted.internet import reactor

        endpoint = wrapClientTLS(creator, TCP4ClientEndpoint(reactor, "127.0.0.1", port))
        pinger = yield connectProtocol(endpoint, Pinger())
        result = yield pinger.done
        return result

    @inlineCallbacks
    def assertWorks(self, port, creator):
        """
        The ping comes back through C{creator}.
        """
        received, reason = yield self.ping(port, creator)
        self.assertEqual(received, b"ping", reason)

    @inlineCallbacks
    def assertFails(self, port, creator):
        """
        The handshake through C{creator} fails: nothing comes back, and the
        connection ends with an OpenSSL error or, for a certificate that
        verifies but names another host, a service-identity one.
        """
        received, reason = yield self.ping(port, creator)
        self.assertEqual(received, b"")
        self.assertTrue(reason.check(SSL.Error, VerificationError), reason)

    @inlineCallbacks
    def test_verified(self):
        """
        A backend with a certificate for its name from the given CA is
        accepted, and gets the name by SNI.
        """
        port = self.backend(certs.makeCertificate(CA, ["backend.test"]))
        yield self.assertWorks(port, tls.backendCreator("backend.test", ca=self.ca))
        self.assertEqual(self.echo.serverNames, [b"backend.test"])

    @inlineCallbacks
    def test_loadedAuthorities(self):
        """
        The CAs may be given loaded, several of them.
        """
        port = self.backend(certs.makeCertificate(CA, ["backend.test"]))
        authorities = (OTHER_CA.certificate, CA.certificate)
        yield self.assertWorks(port, tls.backendCreator("backend.test", ca=authorities))

    @inlineCallbacks
    def test_wrongName(self):
        """
        A certificate for another name is refused.
        """
        port = self.backend(certs.makeCertificate(CA, ["other.test"]))
        yield self.assertFails(port, tls.backendCreator("backend.test", ca=self.ca))

    @inlineCallbacks
    def test_unknownAuthority(self):
        """
        A certificate from another CA is refused, as is a self-signed one;
        the system's CAs do not know the test CA either.
        """
        port = self.backend(certs.makeCertificate(OTHER_CA, ["backend.test"]))
        yield self.assertFails(port, tls.backendCreator("backend.test", ca=self.ca))
        port = self.backend(certs.makeCertificate(None, ["backend.test"]))
        yield self.assertFails(port, tls.backendCreator("backend.test", ca=self.ca))
        port = self.backend(certs.makeCertificate(CA, ["backend.test"]))
        yield self.assertFails(port, tls.backendCreator("backend.test"))

    @inlineCallbacks
    def test_expired(self):
        """
        An expired backend certificate is refused.
        """
        pair = certs.makeCertificate(
            CA, ["backend.test"],
            notBefore=datetime.datetime(2019, 1, 1, tzinfo=UTC),
            notAfter=datetime.datetime(2020, 1, 1, tzinfo=UTC),
        )
        cert, key = self.pair("expired", pair)
        later = datetime.datetime(2019, 6, 1, tzinfo=UTC)
        certificate = certificates.loadCertificate(cert, key, now=later)
        port, _ = self.listen(tls.serverContextFactory([certificate]))
        yield self.assertFails(port, tls.backendCreator("backend.test", ca=self.ca))

    @inlineCallbacks
    def test_unverified(self):
        """
        With C{verify=False}, a self-signed certificate for another name is
        accepted, and the name is still sent by SNI.
        """
        port = self.backend(certs.makeCertificate(None, ["whatever.test"]))
        yield self.assertWorks(port, tls.backendCreator("backend.test", verify=False))
        self.assertEqual(self.echo.serverNames, [b"backend.test"])

    @inlineCallbacks
    def test_serverName(self):
        """
        C{serverName} is the name sent and checked instead of the host's.
        """
        port = self.backend(certs.makeCertificate(CA, ["internal.test"]))
        yield self.assertWorks(
            port, tls.backendCreator("10.1.2.3", ca=self.ca, serverName="internal.test")
        )
        self.assertEqual(self.echo.serverNames, [b"internal.test"])
        yield self.assertFails(
            port, tls.backendCreator("internal.test", ca=self.ca, serverName="other.test")
        )

    @inlineCallbacks
    def test_ipAddress(self):
        """
        An IP address is checked against the certificate's addresses, and
        not sent by SNI, verified or not.
        """
        port = self.backend(certs.makeCertificate(CA, ["127.0.0.1"]))
        yield self.assertWorks(port, tls.backendCreator("127.0.0.1", ca=self.ca))
        yield self.assertFails(port, tls.backendCreator("127.0.0.2", ca=self.ca))
        yield self.assertWorks(port, tls.backendCreator("127.0.0.1", verify=False))
        self.assertEqual(self.echo.serverNames, [None, None])

    @inlineCallbacks
    def test_mutualTLS(self):
        """
        A backend that requires client certificates accepts the client
        certificate given, and sees its subject; without one, the
        connection fails.
        """
        client = certificates.loadCertificate(*self.pair("client", CLIENT))
        port = self.backend(
            certs.makeCertificate(CA, ["backend.test"]),
            clientCA=self.ca, clientCertificate="required",
        )
        yield self.assertWorks(
            port, tls.backendCreator("backend.test", ca=self.ca, clientCertificate=client)
        )
        yield self.assertWorks(
            port, tls.backendCreator("backend.test", verify=False, clientCertificate=client)
        )
        self.assertEqual(self.echo.subjects, [CLIENT_SUBJECT, CLIENT_SUBJECT])
        yield self.assertFails(port, tls.backendCreator("backend.test", ca=self.ca))

    @inlineCallbacks
    def test_mutualTLSChain(self):
        """
        A client certificate's intermediate CAs are sent to the backend.
        """
        intermediate = certs.makeAuthority("client intermediate", issuer=CA)
        pair = certs.makeCertificate(intermediate, ["carol"], client=True)
        client = self.load(pair, "carol", chain=[intermediate.certificate])
        port = self.backend(
            certs.makeCertificate(CA, ["backend.test"]),
            clientCA=self.ca, clientCertificate="required",
        )
        yield self.assertWorks(
            port, tls.backendCreator("backend.test", ca=self.ca, clientCertificate=client)
        )
        self.assertEqual(self.echo.subjects, ["CN=carol,O=proxyws tests"])
