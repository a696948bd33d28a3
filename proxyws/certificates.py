"""
Certificates and private keys from PEM files, and the names a certificate is
valid for.

Plain values come in (file names, passphrases, names); C{cryptography}
objects come out, in L{Certificate}s that L{proxyws.tls} builds contexts
from.  Every function that can refuse its input takes the config file's name
and a key path, and raises L{ConfigError} with one readable line, naming the
sub-key at fault (the names are listed in L{SUBKEYS}).
"""

import datetime
import errno
import re

import attr
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from twisted.internet import ssl

from .errors import ConfigError

# The sub-keys that messages name under the key path a caller passes: the
# configuration should use these names for the same settings.
SUBKEYS = {
    "certPath": "cert",
    "keyPath": "key",
    "minimumVersion": "min_version",
    "ciphers": "ciphers",
    "clientCA": "client_ca",
    "clientCertificate": "client_cert",
    "ca": "ca",
    "passphrase": "key_passphrase_file or key_passphrase_env",
}

_CERTIFICATE_MARKER = re.compile(rb"-----BEGIN (X509 |TRUSTED )?CERTIFICATE-----")
_KEY_MARKER = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_ENCRYPTED_MARKER = re.compile(rb"-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: *4, *ENCRYPTED")

# What an OSError reading a file is called in messages.
_FILE_PROBLEMS = {
    errno.ENOENT: "no such file",
    errno.EACCES: "permission denied",
    errno.EISDIR: "is a directory",
}


@attr.s(frozen=True, slots=True, eq=False)
class Certificate:
    """
    A certificate chain with its private key, and the names it is valid for.

    Compared by identity: two loads of the same files are two certificates.

    @ivar chain: C{cryptography} certificates, the leaf first.
    @ivar key: the leaf's C{cryptography} private key.
    @ivar names: the DNS names the leaf is valid for, in lower case, as
        written (C{"*.example.com"} included): from subjectAltName, or the
        subject's CN when there is no subjectAltName.
    @ivar addresses: the IP addresses the leaf is valid for, as text.
    @ivar certPath: the file the chain came from, for messages.
    """

    chain = attr.ib(converter=tuple)
    key = attr.ib()
    names = attr.ib(converter=tuple)
    addresses = attr.ib(converter=tuple, default=())
    certPath = attr.ib(default=None)

    @property
    def subject(self):
        """
        The leaf's subject, as an RFC 4514 string.
        """
        return self.chain[0].subject.rfc4514_string()

    def privateCertificate(self):
        """
        @return: the leaf and key as a Twisted
            L{twisted.internet.ssl.PrivateCertificate}.
        """
        return ssl.PrivateCertificate.fromCertificateAndKeyPair(
            ssl.Certificate(crypto.X509.from_cryptography(self.chain[0])),
            ssl.KeyPair(crypto.PKey.from_cryptography_key(self.key)),
        )


# Pure helpers: names, selection, validity.


def certificateNames(certificate):
    """
    The DNS names and IP addresses a certificate is valid for.

    @param certificate: a C{cryptography} certificate.
    @return: C{(names, addresses)}: lower-case DNS names from subjectAltName
        (or the CN when there is none, as RFC 6125 allows), and IP addresses.
    """
    try:
        alternatives = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except x509.ExtensionNotFound:
        common = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return tuple(_normalName(a.value) for a in common[:1]), ()
    names = alternatives.get_values_for_type(x509.DNSName)
    addresses = alternatives.get_values_for_type(x509.IPAddress)
    return tuple(_normalName(n) for n in names), tuple(str(a) for a in addresses)


def _normalName(name):
    return name.rstrip(".").lower()


def nameMatches(pattern, serverName):
    """
    Whether a certificate name covers a server name.

    @param pattern: a name from a certificate; C{"*.example.com"} covers
        exactly one label in front of C{example.com}.
    @param serverName: the name a client asked for.
    @return: L{True} or L{False}; case does not matter.
    """
    pattern, serverName = _normalName(pattern), _normalName(serverName)
    if pattern == serverName:
        return True
    if not pattern.startswith("*."):
        return False
    label, dot, rest = serverName.partition(".")
    return bool(label) and bool(dot) and rest == pattern[2:]


def selectCertificate(certificates, default, serverName):
    """
    The certificate to present for a server name: one that names it exactly,
    else one whose wildcard covers it, else C{default}.

    @param certificates: L{Certificate}s, in order of preference.
    @param default: the L{Certificate} for other names and for clients that
        send none.
    @param serverName: the name the client sent (text), or L{None}.
    @return: a L{Certificate}.
    """
    if not serverName:
        return default
    serverName = _normalName(serverName)
    for certificate in certificates:
        if serverName in certificate.names:
            return certificate
    for certificate in certificates:
        if any(nameMatches(n, serverName) for n in certificate.names if n.startswith("*.")):
            return certificate
    return default


def _validityProblem(certPath, leaf, now):
    if leaf.not_valid_after_utc < now:
        return "{!r} expired on {}".format(certPath, leaf.not_valid_after_utc.isoformat())
    if leaf.not_valid_before_utc > now:
        return "{!r} is not valid until {}".format(
            certPath, leaf.not_valid_before_utc.isoformat()
        )
    return None


def _publicBytes(key):
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# Loading files.


def _readFile(path, problem):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        reason = _FILE_PROBLEMS.get(e.errno) or (e.strerror or str(e)).lower()
        raise problem("cannot read {!r}: {}".format(path, reason)) from None


def _parseCertificates(path, data, problem):
    if not _CERTIFICATE_MARKER.search(data):
        raise problem("{!r} holds no PEM certificate".format(path))
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise problem("{!r} holds a PEM certificate that cannot be parsed".format(path)) from None


def _parseKey(path, data, passphrase, problem):
    if not _KEY_MARKER.search(data):
        raise problem("{!r} holds no PEM private key".format(path))
    encrypted = bool(_ENCRYPTED_MARKER.search(data))
    if encrypted and not passphrase:
        raise problem(
            "{!r} is encrypted and no passphrase was given; set {}".format(
                path, SUBKEYS["passphrase"]
            )
        )
    if isinstance(passphrase, str):
        passphrase = passphrase.encode("utf-8")
    try:
        return serialization.load_pem_private_key(data, passphrase if encrypted else None)
    except (ValueError, TypeError, NotImplementedError):
        if encrypted:
            raise problem("the passphrase given does not decrypt {!r}".format(path)) from None
        raise problem("{!r} holds a PEM private key that cannot be parsed".format(path)) from None


def _problemAt(configPath, keyPath, subkey):
    """
    @return: a function of a message making the L{ConfigError} for
        C{keyPath.subkey}.
    """
    where = "{}.{}".format(keyPath, subkey) if keyPath else subkey
    return lambda message: ConfigError(configPath, where, message)


def loadCertificate(
    certPath,
    keyPath,
    passphrase=None,
    configPath="proxyws.toml",
    keyPathInConfig="listen[0].tls",
    now=None,
):
    """
    Load and check a certificate chain and its private key from PEM files.

    @param certPath: the PEM file of the certificate, then its chain.
    @param keyPath: the PEM file of the private key (may be C{certPath}).
    @param passphrase: the key's passphrase (L{str} or L{bytes}), for an
        encrypted key; ignored for a key that is not encrypted.
    @param configPath: the config file, for messages.
    @param keyPathInConfig: where the settings are in the config, for
        messages; they name C{.cert} or C{.key} under it.
    @param now: the time to check validity at (an aware C{datetime}); now by
        default.
    @return: a L{Certificate}.
    @raise ConfigError: for a file that cannot be read, holds no or an
        invalid certificate or key, an encrypted key without its passphrase,
        a key that does not match the certificate, or a certificate that has
        expired or is not valid yet.
    """
    certProblem = _problemAt(configPath, keyPathInConfig, SUBKEYS["certPath"])
    keyProblem = _problemAt(configPath, keyPathInConfig, SUBKEYS["keyPath"])
    chain = _parseCertificates(certPath, _readFile(certPath, certProblem), certProblem)
    key = _parseKey(keyPath, _readFile(keyPath, keyProblem), passphrase, keyProblem)
    if _publicBytes(key.public_key()) != _publicBytes(chain[0].public_key()):
        raise keyProblem("{!r} does not match the certificate {!r}".format(keyPath, certPath))
    now = now or datetime.datetime.now(datetime.timezone.utc)
    problem = _validityProblem(certPath, chain[0], now)
    if problem:
        raise certProblem(problem)
    refusal = _openSSLRefusal(chain[0], key)
    if refusal:
        raise certProblem("{!r} is refused by OpenSSL: {}".format(certPath, refusal))
    names, addresses = certificateNames(chain[0])
    return Certificate(chain, key, names, addresses, certPath)


def _openSSLRefusal(leaf, key):
    """
    Why OpenSSL will not use a certificate (a key too small or a digest too
    weak for its security level), or L{None}.
    """
    context = SSL.Context(SSL.TLS_METHOD)
    try:
        context.use_certificate(leaf)
        context.use_privatekey(key)
    except SSL.Error as e:
        return _openSSLReason(e)
    return None


def _openSSLReason(error):
    """
    @return: the reason of the last OpenSSL error in C{error}.
    """
    reasons = error.args[0] if error.args and isinstance(error.args[0], list) else []
    return reasons[-1][2] if reasons else str(error)


def loadAuthorities(path, configPath="proxyws.toml", keyPath="ca"):
    """
    Load the CA certificates trusted to sign peers' certificates.

    @param path: a PEM file of one or more certificates.
    @param keyPath: the full key path of the setting, for messages.
    @return: a L{tuple} of C{cryptography} certificates.
    @raise ConfigError: for a file that cannot be read or holds no valid
        certificate.
    """
    def problem(message):
        return ConfigError(configPath, keyPath, message)

    return tuple(_parseCertificates(path, _readFile(path, problem), problem))


def _authorities(ca, configPath, keyPath):
    """
    CA certificates given either as a file name or already loaded.
    """
    if isinstance(ca, (str, bytes)):
        return loadAuthorities(ca, configPath, keyPath)
    return tuple(ca)
