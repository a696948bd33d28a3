"""
Pure access control: Apache address rules and HTTP Basic authentication.

Address rules are those of Apache 2.2's C{Order}, C{Allow from} and C{Deny
from} (mod_access_compat) and of Apache 2.4's C{Require ip}; they are parsed
once by L{parseRules} or L{parseRequire} into an L{AccessRules} value and
applied per request by L{allowed}.

Basic authentication reads Apache's htpasswd files (L{Htpasswd.load}),
parses the C{Authorization} header (L{parseBasicAuth}) and writes the
C{WWW-Authenticate} challenge (L{challenge}).  Nothing here does network I/O;
only L{Htpasswd.load} reads a file.
"""

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import secrets

import attr
import bcrypt
from passlib.hash import apr_md5_crypt, sha256_crypt, sha512_crypt

from .errors import AccessRuleError

ALLOW_DENY = "allow,deny"
DENY_ALLOW = "deny,allow"

# The spellings of Apache's Order directive (compared lower-cased, without
# spaces).  Apache 2.2 also has "Mutual-failure", documented as the same as
# "Allow,Deny".
_ORDERS = {
    "allow,deny": ALLOW_DENY,
    "deny,allow": DENY_ALLOW,
    "mutual-failure": ALLOW_DENY,
}

# The table of the Order directive in Apache's mod_access_compat
# documentation: (order, matches an Allow, matches a Deny) -> allowed.  With
# "allow,deny" a client must match an Allow and no Deny; with "deny,allow" it
# is refused only when it matches a Deny and no Allow.  Neither match: the
# default is the second word of the order.  Both: the last one evaluated wins.
_DECISIONS = {
    (ALLOW_DENY, True, False): True,
    (ALLOW_DENY, False, True): False,
    (ALLOW_DENY, False, False): False,
    (ALLOW_DENY, True, True): False,
    (DENY_ALLOW, True, False): True,
    (DENY_ALLOW, False, True): False,
    (DENY_ALLOW, False, False): True,
    (DENY_ALLOW, True, True): True,
}

# The keyword matching every client, as in "Allow from all".
_ALL = "all"

# Clients of an IPv6 socket that connect over IPv4 appear as ::ffff:a.b.c.d;
# rules inside this network are turned into the IPv4 rules they stand for.
_MAPPED = ipaddress.ip_network("::ffff:0:0/96")

# Apache's partial addresses ("10.1", "192.168.1.") match their leading
# bytes; proxyws asks for the CIDR instead.
_PARTIAL = re.compile(r"([0-9]{1,3})(\.[0-9]{1,3}){0,2}\.?")

_EXPECTED_ADDRESS = "is not an IP address, a CIDR such as '10.0.0.0/8', or 'all'"

# The hash types an htpasswd file may hold, by prefix (tried in this order);
# "htpasswd -B" writes $2y$, "htpasswd -m" $apr1$, "htpasswd -s" {SHA}, and
# "htpasswd -2"/"-5" (Apache 2.5) or crypt(3) the SHA-crypt $5$ and $6$.
_SCHEMES = (
    (b"$2y$", "bcrypt"),
    (b"$2b$", "bcrypt"),
    (b"$2a$", "bcrypt"),
    (b"$5$", "SHA-256-crypt"),
    (b"$6$", "SHA-512-crypt"),
    (b"$apr1$", "apr1"),
    (b"{SHA}", "{SHA}"),
)

SUPPORTED_HASHES = (
    "bcrypt ($2y$, $2b$, $2a$), SHA-crypt ($5$, $6$), apr1 ($apr1$) and {SHA}"
)

# A well-formed bcrypt hash: version, two-digit cost, 22 characters of salt
# and 31 of checksum.
_BCRYPT = re.compile(rb"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")

# bcrypt uses the first 72 bytes of a password and ignores the rest (Apache
# and htpasswd do the same); the bcrypt package refuses longer ones instead.
_BCRYPT_MAX = 72

# Cost of the dummy hash checked for an unknown user of an empty file.
_DEFAULT_BCRYPT_COST = 5


@attr.s(frozen=True, slots=True)
class AddressSet:
    """
    The clients named by a list of Allow (or Deny) entries.

    @ivar everything: whether C{"all"} is one of the entries.
    @ivar networks: the networks of the other entries, as
        L{ipaddress.IPv4Network} and L{ipaddress.IPv6Network} values; an
        IPv4-mapped IPv6 network is kept as the IPv4 network it stands for.
    """

    everything = attr.ib()
    networks = attr.ib()
    _v4 = attr.ib(init=False, repr=False, eq=False)
    _v6 = attr.ib(init=False, repr=False, eq=False)

    @_v4.default
    def _v4Default(self):
        return _masks(self.networks, 4)

    @_v6.default
    def _v6Default(self):
        return _masks(self.networks, 6)

    def contains(self, address):
        """
        Whether an address is one of this set.

        @param address: an L{ipaddress.IPv4Address} or
            L{ipaddress.IPv6Address} (IPv4-mapped ones already converted), or
            L{None} for a client that has no IP address, which only C{"all"}
            matches.
        @return: L{True} or L{False}.
        """
        if self.everything:
            return True
        if address is None:
            return False
        value = int(address)
        table = self._v4 if address.version == 4 else self._v6
        for network, mask in table:
            if value & mask == network:
                return True
        return False


def _masks(networks, version):
    """
    Precompute networks of one IP version for L{AddressSet.contains}.

    @return: a tuple of C{(network, netmask)} pairs of integers.
    """
    return tuple(
        (int(n.network_address), int(n.netmask))
        for n in networks
        if n.version == version
    )


@attr.s(frozen=True, slots=True)
class AccessRules:
    """
    Which client addresses may use a host or route.

    @ivar order: L{ALLOW_DENY} or L{DENY_ALLOW}.
    @ivar allow: the L{AddressSet} of the Allow entries.
    @ivar deny: the L{AddressSet} of the Deny entries.
    """

    order = attr.ib()
    allow = attr.ib()
    deny = attr.ib()


def parseRules(order, allow, deny, keyPath="access"):
    """
    Address rules from the settings of Apache 2.2's C{Order}, C{Allow from}
    and C{Deny from}.

    @param order: C{"allow,deny"} or C{"deny,allow"}, in any case and with
        any spaces (C{"Deny, Allow"}); C{"mutual-failure"} is taken as
        C{"allow,deny"}, as Apache does.
    @param allow: a list of entries, each C{"all"}, an IPv4 or IPv6 address,
        or a CIDR such as C{"10.0.0.0/8"} or C{"2001:db8::/32"} (a netmask,
        C{"10.0.0.0/255.0.0.0"}, is accepted too).  A single string is taken
        as a list of one.
    @param deny: a list of entries, as C{allow}.
    @param keyPath: the key path of the table holding the settings; the
        key path of an error is built from it (C{"access.allow[2]"}).
    @return: an L{AccessRules}.
    @raise AccessRuleError: for an order or entry that cannot be used.
    """
    where = keyPath + ".order"
    normalized = _ORDERS.get(
        "".join(order.split()).lower() if isinstance(order, str) else None
    )
    if normalized is None:
        raise AccessRuleError(
            where, "{!r} is not 'allow,deny' or 'deny,allow'".format(order)
        )
    return AccessRules(
        order=normalized,
        allow=_addressSet(allow, keyPath + ".allow"),
        deny=_addressSet(deny, keyPath + ".deny"),
    )


def parseRequire(addresses, keyPath="access"):
    """
    Address rules equivalent to Apache 2.4's C{Require ip}: a client is
    allowed if and only if one of the entries matches it.

    @param addresses: a list of entries, as the C{allow} of L{parseRules}.
    @param keyPath: the key path of the table holding the setting; errors
        are placed at C{keyPath + ".require_ip[N]"}.
    @return: an L{AccessRules}.
    @raise AccessRuleError: for an entry that cannot be used.
    """
    return AccessRules(
        order=ALLOW_DENY,
        allow=_addressSet(addresses, keyPath + ".require_ip"),
        deny=AddressSet(everything=False, networks=()),
    )


def _addressSet(entries, keyPath):
    """
    Parse the entries of one Allow, Deny or Require list.

    @raise AccessRuleError: for a value that is not a list of strings, or an
        entry that is not an address, a CIDR or C{"all"}.
    """
    if isinstance(entries, str):
        entries = [entries]
    if not isinstance(entries, (list, tuple)):
        raise AccessRuleError(
            keyPath,
            "{!r} is not a list of IP addresses, CIDRs or 'all'".format(entries),
        )
    everything = False
    networks = []
    for index, entry in enumerate(entries):
        if isinstance(entry, str) and entry.lower() == _ALL:
            everything = True
        else:
            where = "{}[{}]".format(keyPath, index)
            networks.append(_network(entry, where))
    return AddressSet(everything=everything, networks=tuple(networks))


def _network(entry, keyPath):
    """
    Parse one address or CIDR.

    @return: an L{ipaddress.IPv4Network} or L{ipaddress.IPv6Network}; an
        IPv4-mapped IPv6 network becomes the IPv4 network it stands for.
    @raise AccessRuleError: for anything else.
    """
    if not isinstance(entry, str):
        raise AccessRuleError(keyPath, "{!r} {}".format(entry, _EXPECTED_ADDRESS))
    try:
        network = ipaddress.ip_network(entry)
    except ValueError:
        raise AccessRuleError(keyPath, _networkProblem(entry)) from None
    if network.version == 6 and network.subnet_of(_MAPPED):
        network = ipaddress.ip_network(
            "{}/{}".format(network.network_address.ipv4_mapped, network.prefixlen - 96)
        )
    return network


def _networkProblem(entry):
    """
    Explain why C{entry} is not an address or CIDR.

    @return: the message of the error.
    """
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        pass
    else:
        return "{!r} has host bits set; write the network as {!r}".format(
            entry, str(network)
        )
    octets = [o for o in entry.split(".") if o]
    if _PARTIAL.fullmatch(entry) and all(int(o) <= 255 for o in octets):
        cidr = "{}/{}".format(".".join(octets + ["0"] * (4 - len(octets))), 8 * len(octets))
        return "{!r} is an Apache partial address; write it as the CIDR {!r}".format(
            entry, cidr
        )
    return "{!r} {}".format(entry, _EXPECTED_ADDRESS)


def clientAddress(address):
    """
    The IP address of a client, as the rules compare it.

    @param address: the client's address as text, such as C{"10.1.2.3"},
        C{"2001:db8::1"} or C{"::ffff:10.1.2.3"}.
    @return: an L{ipaddress.IPv4Address} (for an IPv4-mapped IPv6 address
        too) or L{ipaddress.IPv6Address}, or L{None} when C{address} is not
        an IP address (a UNIX socket's peer, for one).
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def allowed(rules, address):
    """
    Whether a client may use what C{rules} guard, by Apache's C{Order}
    semantics (see L{_DECISIONS}).

    An address that is not an IP address matches only C{"all"} entries.

    @param rules: an L{AccessRules}.
    @param address: the client's IP address as text; an IPv4-mapped IPv6
        address (C{"::ffff:10.1.2.3"}) matches the IPv4 rules.
    @return: L{True} if the request may go on, L{False} if it is refused.
    """
    ip = clientAddress(address)
    return _DECISIONS[rules.order, rules.allow.contains(ip), rules.deny.contains(ip)]


def _randomPassword():
    """
    A random password for a dummy hash: text, since passlib refuses
    passwords with a NUL byte.

    @return: 32 hex digits, as L{bytes}.
    """
    return secrets.token_hex(16).encode("ascii")


@attr.s(frozen=True, slots=True)
class _Bcrypt:
    """
    A bcrypt hash (C{$2y$}, C{$2b$}, C{$2a$}).

    @ivar hashed: the hash as in the file.
    """

    hashed = attr.ib()

    @classmethod
    def fromHash(cls, hashed):
        """
        @return: a L{_Bcrypt}, or L{None} if C{hashed} is malformed.
        """
        return cls(hashed) if _BCRYPT.fullmatch(hashed) else None

    def verify(self, password):
        """
        @return: whether C{password} matches; bcrypt compares in constant
            time.
        """
        return bcrypt.checkpw(password[:_BCRYPT_MAX], self.hashed)

    def twin(self):
        """
        @return: a L{_Bcrypt} of a random password, with the same cost.
        """
        cost = int(self.hashed[4:6])
        return _Bcrypt(bcrypt.hashpw(_randomPassword(), bcrypt.gensalt(rounds=cost)))


@attr.s(frozen=True, slots=True)
class _Passlib:
    """
    A hash checked by passlib: SHA-crypt (C{$5$}, C{$6$}) or apr1
    (C{$apr1$}).

    @ivar handler: the passlib handler of the hash's type.
    @ivar hashed: the hash as in the file, as text.
    """

    handler = attr.ib()
    hashed = attr.ib()

    @classmethod
    def forHandler(cls, handler, hashed):
        """
        @return: a L{_Passlib}, or L{None} if C{hashed} is malformed.
        """
        try:
            text = hashed.decode("ascii")
            parsed = handler.from_string(text)
        except ValueError:
            return None
        return cls(handler, text) if parsed.checksum else None

    def verify(self, password):
        """
        @return: whether C{password} matches; passlib compares in constant
            time.  A password passlib refuses (one with a NUL byte, or longer
            than 4096 bytes) matches nothing.
        """
        try:
            return self.handler.verify(password, self.hashed)
        except ValueError:
            return False

    def twin(self):
        """
        @return: a L{_Passlib} of a random password, with the same rounds.
        """
        rounds = getattr(self.handler.from_string(self.hashed), "rounds", None)
        handler = self.handler.using(rounds=rounds) if rounds else self.handler
        return _Passlib(self.handler, handler.hash(_randomPassword()))


@attr.s(frozen=True, slots=True)
class _Sha1:
    """
    An unsalted C{{SHA}} hash: base64 of the SHA-1 of the password.

    @ivar digest: the 20 bytes of the SHA-1.
    """

    digest = attr.ib()

    @classmethod
    def fromHash(cls, hashed):
        """
        @return: a L{_Sha1}, or L{None} if C{hashed} is malformed.
        """
        try:
            digest = base64.b64decode(hashed[len(b"{SHA}"):], validate=True)
        except binascii.Error:
            return None
        return cls(digest) if len(digest) == 20 else None

    def verify(self, password):
        """
        @return: whether C{password} matches, compared in constant time.
        """
        return hmac.compare_digest(hashlib.sha1(password).digest(), self.digest)

    def twin(self):
        """
        @return: a L{_Sha1} of a random password.
        """
        return _Sha1(hashlib.sha1(_randomPassword()).digest())


# How each type in _SCHEMES is parsed: a function from the hash (bytes) to a
# value with verify(password) and twin(), or None for a malformed hash.
_PARSERS = {
    "bcrypt": _Bcrypt.fromHash,
    "SHA-256-crypt": lambda hashed: _Passlib.forHandler(sha256_crypt, hashed),
    "SHA-512-crypt": lambda hashed: _Passlib.forHandler(sha512_crypt, hashed),
    "apr1": lambda hashed: _Passlib.forHandler(apr_md5_crypt, hashed),
    "{SHA}": _Sha1.fromHash,
}


@attr.s(frozen=True, slots=True)
class Htpasswd:
    """
    The users and password hashes of an Apache htpasswd file.

    Checking a password costs what its hash was made to cost: about 2 ms
    for bcrypt at C{htpasswd -B}'s default cost 5, about 250 ms at cost 12,
    some 15 ms for SHA-crypt at 5000 rounds (computed in pure Python, holding
    the GIL), well under a millisecond for apr1 and C{{SHA}}.  Results are
    not cached: a cache would keep passwords, or their fast hashes, in
    memory, which the slowness of bcrypt is there to prevent.  A caller on
    the reactor thread should therefore run L{check} in a thread pool
    (bcrypt releases the GIL while it hashes).

    The file is read once, by L{load}; unlike Apache, which reads the file
    on every request, a change needs a new L{Htpasswd}.

    @ivar path: the file it was read from.
    @ivar hashes: a L{dict} from user name (L{bytes}) to that user's
        parsed hash.
    @ivar dummy: a parsed hash of a random password, of the type and cost of
        the file's first entry, checked for unknown users.
    """

    path = attr.ib()
    hashes = attr.ib(repr=False)
    dummy = attr.ib(repr=False)

    @classmethod
    def load(cls, path):
        """
        Read an htpasswd file.

        @param path: the file's path.
        @return: an L{Htpasswd}.
        @raise ValueError: if the file cannot be read (the message says
            why), or for a line that is malformed or holds a hash of an
            unsupported type (the message names the file and the line).
        """
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ValueError(
                "cannot read {!r}: {}".format(path, e.strerror or e)
            ) from None
        return parseHtpasswd(data, path)

    def check(self, user, password):
        """
        Whether C{password} is the password of C{user}.

        An unknown user costs about as much time as a known one (a dummy hash
        is checked), so that user names cannot be found out by timing.

        @param user: the user name, as sent.
        @type user: L{bytes}
        @param password: the password, as sent.
        @type password: L{bytes}
        @return: L{True} or L{False}.
        """
        hashed = self.hashes.get(user)
        if hashed is None:
            self.dummy.verify(password)
            return False
        return hashed.verify(password)


def parseHtpasswd(data, path="<htpasswd>"):
    """
    Parse the contents of an htpasswd file.

    Each line is C{user:hash}; blank lines and lines starting with C{#} are
    ignored, and so are the spaces around a line and any C{:field} after the
    hash (Apache ignores them too).  A user may appear only once.

    @param data: the contents of the file.
    @type data: L{bytes}
    @param path: the file's name, for error messages.
    @return: an L{Htpasswd}.
    @raise ValueError: for a malformed line, a hash of an unsupported type or
        a user named twice; the message names the file and the line.
    """
    hashes = {}
    lines = {}
    first = None
    for number, line in enumerate(data.split(b"\n"), 1):
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        user, _, rest = line.partition(b":")
        hashed = rest.split(b":")[0]
        where = "{!r} line {}".format(path, number)
        if not user or not hashed:
            raise ValueError("{}: expected 'user:hash'".format(where))
        if user in hashes:
            raise ValueError(
                "{}: user {!r} appears again (first on line {})".format(
                    where, _name(user), lines[user]
                )
            )
        hashes[user] = _parseHash(hashed, _name(user), where)
        lines[user] = number
        if first is None:
            first = hashes[user]
    dummy = first.twin() if first is not None else _Bcrypt(
        bcrypt.hashpw(_randomPassword(), bcrypt.gensalt(rounds=_DEFAULT_BCRYPT_COST))
    )
    return Htpasswd(path=path, hashes=hashes, dummy=dummy)


def _name(user):
    """
    @return: a user name as text, for messages.
    """
    return user.decode("utf-8", "backslashreplace")


def _parseHash(hashed, user, where):
    """
    Parse the hash of one line.

    @raise ValueError: for an unsupported type or a malformed hash.
    """
    for prefix, scheme in _SCHEMES:
        if hashed.startswith(prefix):
            parsed = _PARSERS[scheme](hashed)
            if parsed is None:
                raise ValueError(
                    "{}: the {} hash of user {!r} is malformed".format(
                        where, scheme, user
                    )
                )
            return parsed
    raise ValueError(
        "{}: the hash of user {!r} is of an unsupported type; supported are {}; "
        "make one with 'htpasswd -B'".format(where, user, SUPPORTED_HASHES)
    )


def parseBasicAuth(headerValue):
    """
    The user and password of an C{Authorization: Basic} header (RFC 7617).

    @param headerValue: the header's value, or L{None} when there is none.
    @type headerValue: L{bytes}
    @return: C{(user, password)} as L{bytes}, or L{None} when the header is
        missing, of another scheme, not one canonical base64 token (no
        extra padding, no stray bits: a proxy and a backend must not read
        the same credentials two ways), or decodes to something without a
        C{:}.
    """
    if headerValue is None:
        return None
    parts = headerValue.split()
    if len(parts) != 2 or parts[0].lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        return None
    if base64.b64encode(decoded) != parts[1]:
        return None
    user, colon, password = decoded.partition(b":")
    if not colon:
        return None
    return user, password


def challenge(realm):
    """
    The C{WWW-Authenticate} value asking for Basic credentials.

    @param realm: the realm shown to the user; C{"} and C{\\} are escaped,
        other characters are sent as UTF-8.
    @type realm: L{str}
    @return: such as C{b'Basic realm="proxyws", charset="UTF-8"'}.
    @raise ValueError: if C{realm} holds a control character, which could
        split the header.
    """
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in realm):
        raise ValueError(
            "the realm {!r} may not hold control characters".format(realm)
        )
    quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
    return 'Basic realm="{}", charset="UTF-8"'.format(quoted).encode("utf-8")


# Clients behind trusted proxies.


def within(address, networks):
    """
    Whether C{address} (text) is in one of C{networks}.
    """
    if not networks:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def realClient(forwardedFor, peer, trusted):
    """
    The client's address behind trusted proxies: the last address of
    C{X-Forwarded-For} that is not a trusted proxy (nginx's
    C{real_ip_recursive on}).

    @param forwardedFor: the header's values, or L{None}.
    @param peer: the address of the connection's peer, a trusted proxy.
    @param trusted: the trusted networks.
    @return: the address as text.
    """
    addresses = [
        a.strip().decode("ascii", "replace")
        for value in forwardedFor or ()
        for a in value.split(b",")
        if a.strip()
    ]
    client = peer
    for address in reversed(addresses):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            break
        client = address
        if not within(address, trusted):
            break
    return client
