"""
Certificates made at test time with C{cryptography}: a CA, server and client
certificates it signs, an expired one, a self-signed one, and PEM files of
them (keys optionally encrypted).

Keys are ECDSA P-256: quick to make, so every test module can have its own.
"""

import collections
import datetime
import ipaddress
import os
import ssl
import warnings

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# A certificate and its private key.
Pair = collections.namedtuple("Pair", "certificate key")

_DAY = datetime.timedelta(days=1)


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _name(commonName):
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "proxyws tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, commonName),
        ]
    )


def _generalName(name):
    """
    A subjectAltName entry: an IP address or a DNS name.
    """
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def makeKey():
    """
    @return: a new private key.
    """
    return ec.generate_private_key(ec.SECP256R1())


def makeAuthority(commonName="proxyws test CA", issuer=None):
    """
    A CA certificate, valid from yesterday for a year.

    @param issuer: the L{Pair} of the CA that signs it (an intermediate CA),
        or L{None} for a self-signed root.
    @return: a L{Pair}.
    """
    key = makeKey()
    name = _name(commonName)
    signer = issuer or Pair(None, key)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.certificate.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - _DAY)
        .not_valid_after(_now() + 365 * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.key.public_key()),
            critical=False,
        )
        .sign(signer.key, hashes.SHA256())
    )
    return Pair(certificate, key)


def makeCertificate(
    issuer=None,
    names=("localhost",),
    commonName=None,
    notBefore=None,
    notAfter=None,
    client=False,
    subjectAltName=True,
    key=None,
):
    """
    An end-entity certificate.

    @param issuer: the L{Pair} of the CA that signs it, or L{None} for a
        self-signed certificate.
    @param names: DNS names and IP addresses for its subjectAltName.
    @param commonName: its CN; the first name by default.
    @param notBefore: start of validity; yesterday by default.
    @param notAfter: end of validity; in 30 days by default.
    @param client: make a client (rather than server) certificate.
    @param subjectAltName: whether to include the subjectAltName extension.
    @param key: its key; a new one by default.
    @return: a L{Pair}.
    """
    key = key or makeKey()
    subject = _name(commonName or (names[0] if names else "nobody"))
    if issuer is None:
        issuer = Pair(None, key)
        issuerName = subject
    else:
        issuerName = issuer.certificate.subject
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuerName)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(notBefore or _now() - _DAY)
        .not_valid_after(notAfter or _now() + 30 * _DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if subjectAltName and names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_generalName(n) for n in names]), critical=False
        )
    if issuer.certificate is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    return Pair(builder.sign(issuer.key, hashes.SHA256()), key)


def certificatePem(*certificates):
    """
    @return: the PEM text of C{certificates}, one after the other.
    """
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def keyPem(key, passphrase=None, traditional=False):
    """
    @param passphrase: encrypt the key with this (bytes), if given.
    @param traditional: write the OpenSSL C{BEGIN EC PRIVATE KEY} format
        rather than PKCS#8.
    @return: the PEM text of C{key}.
    """
    encryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    form = (
        serialization.PrivateFormat.TraditionalOpenSSL
        if traditional
        else serialization.PrivateFormat.PKCS8
    )
    return key.private_bytes(serialization.Encoding.PEM, form, encryption)


def writeFile(directory, filename, data):
    """
    Write C{data} to C{directory/filename}.

    @return: the path.
    """
    path = os.path.join(directory, filename)
    with open(path, "wb") as f:
        f.write(data)
    return path


def writePair(directory, stem, pair, chain=(), passphrase=None):
    """
    Write C{stem.crt} (the certificate, then C{chain}) and C{stem.key}.

    @return: C{(certificate path, key path)}.
    """
    return (
        writeFile(directory, stem + ".crt", certificatePem(pair.certificate, *chain)),
        writeFile(directory, stem + ".key", keyPem(pair.key, passphrase)),
    )


def clientContext(
    authority, maximum=None, minimum=None, alpn=("http/1.1",), certificate=None, ciphers=None
):
    """
    A Python C{ssl} client context that verifies the server's chain against
    C{authority} but not its name (the tests check the name themselves).

    @param authority: the L{makeAuthority} result trusted.
    @param maximum: the highest C{ssl.TLSVersion} to offer.
    @param minimum: the lowest C{ssl.TLSVersion} to offer.
    @param alpn: the ALPN protocols to offer.
    @param certificate: C{(cert path, key path)} of a client certificate.
    @param ciphers: an OpenSSL cipher list (TLS 1.2 and below).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(cadata=certificatePem(authority.certificate).decode())
    with warnings.catch_warnings():
        # Python deprecates TLS 1.0 and 1.1; offering them is the point.
        warnings.simplefilter("ignore", DeprecationWarning)
        if minimum is not None:
            # OpenSSL 3 needs security level 0 to offer TLS 1.0 and 1.1 at all.
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
            context.minimum_version = minimum
        if maximum is not None:
            context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    if certificate is not None:
        context.load_cert_chain(*certificate)
    return context
