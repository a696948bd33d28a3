"""
Tests for L{proxyws.access}: Apache address rules, htpasswd files and Basic
authentication, as tables.
"""

import base64
import hashlib
import os
from ipaddress import ip_network

import attr
import bcrypt
from passlib.hash import apr_md5_crypt, sha256_crypt, sha512_crypt
from twisted.trial.unittest import SynchronousTestCase

from proxyws.access import (
    ALLOW_DENY, DENY_ALLOW, AccessRuleError, Htpasswd, allowed, challenge,
    clientAddress, parseBasicAuth, parseHtpasswd, parseRequire, parseRules)

from .test_twistd import temporaryDirectory

# Rules with every case of the Order table: an address may match only an
# Allow, only a Deny, both (a Deny network inside the Allow one) or neither.
IPV4_ALLOW = ["10.0.0.0/8"]
IPV4_DENY = ["10.1.0.0/16", "172.16.0.0/12"]
IPV6_ALLOW = ["2001:db8::/32"]
IPV6_DENY = ["2001:db8:1::/48", "fd00::/8"]

# (what the address matches, IPv4 address, IPv6 address)
MATCHES = [
    ("allow only", "10.2.3.4", "2001:db8:2::1"),
    ("deny only", "172.16.5.5", "fd00::1"),
    ("both", "10.1.2.3", "2001:db8:1::5"),
    ("neither", "192.0.2.1", "2001:db9::1"),
]

# The table of the Order directive in Apache's mod_access_compat
# documentation: what each order decides for each kind of match.
ORDER_TABLE = {
    ("allow,deny", "allow only"): True,
    ("allow,deny", "deny only"): False,
    ("allow,deny", "neither"): False,
    ("allow,deny", "both"): False,
    ("deny,allow", "allow only"): True,
    ("deny,allow", "deny only"): False,
    ("deny,allow", "neither"): True,
    ("deny,allow", "both"): True,
}


def b64(text):
    """
    @return: the base64 of C{text} encoded as UTF-8.
    """
    return base64.b64encode(text.encode("utf-8"))


class OrderTests(SynchronousTestCase):
    """
    L{allowed} follows Apache's C{Order} semantics.
    """

    def test_orderMatrix(self):
        """
        In both orders, IPv4 and IPv6 addresses matching an Allow only, a
        Deny only, both or neither get what Apache's table says.
        """
        families = [
            ("IPv4", IPV4_ALLOW, IPV4_DENY, 1),
            ("IPv6", IPV6_ALLOW, IPV6_DENY, 2),
        ]
        for order in ["allow,deny", "deny,allow"]:
            for family, allow, deny, column in families:
                rules = parseRules(order, allow, deny)
                for row in MATCHES:
                    self.assertEqual(
                        allowed(rules, row[column]),
                        ORDER_TABLE[order, row[0]],
                        (order, family, row[0], row[column]),
                    )

    def test_mixedFamilies(self):
        """
        IPv4 and IPv6 entries may be mixed in one list; each family matches
        only its own entries.
        """
        rules = parseRules(
            "allow,deny", IPV4_ALLOW + IPV6_ALLOW, IPV4_DENY + IPV6_DENY
        )
        for kind, v4, v6 in MATCHES:
            expected = ORDER_TABLE["allow,deny", kind]
            self.assertEqual(allowed(rules, v4), expected, v4)
            self.assertEqual(allowed(rules, v6), expected, v6)

    def test_all(self):
        """
        C{"all"}, in any case, matches every client, IPv4 and IPv6; the
        usual Apache stanzas mean what they mean there.
        """
        cases = [
            # order, allow, deny, address, allowed
            ("allow,deny", ["all"], [], "192.0.2.1", True),
            ("allow,deny", ["all"], [], "2001:db8::1", True),
            ("allow,deny", ["All"], [], "10.1.2.3", True),
            ("allow,deny", "all", [], "10.1.2.3", True),
            ("allow,deny", ["all"], ["10.1.0.0/16"], "10.1.2.3", False),
            ("allow,deny", ["all"], ["10.1.0.0/16"], "10.2.0.1", True),
            ("deny,allow", [], ["all"], "192.0.2.1", False),
            ("deny,allow", ["10.0.0.0/8"], ["all"], "10.1.2.3", True),
            ("deny,allow", ["10.0.0.0/8"], ["all"], "192.0.2.1", False),
            ("deny,allow", ["10.0.0.0/8"], ["ALL"], "2001:db8::1", False),
            ("allow,deny", ["all"], ["all"], "10.1.2.3", False),
            ("deny,allow", ["all"], ["all"], "10.1.2.3", True),
            ("allow,deny", [], [], "10.1.2.3", False),
            ("deny,allow", [], [], "10.1.2.3", True),
        ]
        for order, allow, deny, address, expected in cases:
            rules = parseRules(order, allow, deny)
            self.assertEqual(
                allowed(rules, address), expected, (order, allow, deny, address)
            )

    def test_singleAddresses(self):
        """
        An address without a prefix length matches that address only.
        """
        rules = parseRules("allow,deny", ["192.0.2.7", "2001:db8::7"], [])
        cases = [
            ("192.0.2.7", True),
            ("192.0.2.8", False),
            ("2001:db8::7", True),
            ("2001:db8::8", False),
        ]
        for address, expected in cases:
            self.assertEqual(allowed(rules, address), expected, address)

    def test_ipv4Mapped(self):
        """
        An IPv4-mapped IPv6 client address matches IPv4 rules, and an
        IPv4-mapped rule matches IPv4 clients.
        """
        cases = [
            # allow, address, allowed
            (["10.0.0.0/8"], "::ffff:10.1.2.3", True),
            (["10.0.0.0/8"], "::FFFF:10.1.2.3", True),
            (["10.0.0.0/8"], "::ffff:192.0.2.1", False),
            (["10.1.2.3"], "::ffff:a01:203", True),
            (["::ffff:10.0.0.0/104"], "10.1.2.3", True),
            (["::ffff:10.0.0.0/104"], "::ffff:10.1.2.3", True),
            (["::ffff:10.0.0.0/104"], "192.0.2.1", False),
            (["::ffff:10.1.2.3"], "10.1.2.3", True),
            (["2001:db8::/32"], "10.1.2.3", False),
            (["10.0.0.0/8"], "::10.1.2.3", False),
        ]
        for allow, address, expected in cases:
            rules = parseRules("allow,deny", allow, [])
            self.assertEqual(allowed(rules, address), expected, (allow, address))

    def test_ipv4MappedDeny(self):
        """
        A client connecting over IPv4 to an IPv6 socket cannot slip past a
        Deny of its IPv4 network.
        """
        rules = parseRules("allow,deny", ["all"], ["10.0.0.0/8"])
        self.assertFalse(allowed(rules, "::ffff:10.1.2.3"))
        self.assertTrue(allowed(rules, "::ffff:192.0.2.1"))

    def test_notAnIPAddress(self):
        """
        A client address that is not an IP address matches only C{"all"}.
        """
        cases = [
            ("allow,deny", ["0.0.0.0/0", "::/0"], [], False),
            ("allow,deny", ["all"], [], True),
            ("deny,allow", [], ["0.0.0.0/0", "::/0"], True),
            ("deny,allow", [], ["all"], False),
        ]
        for order, allow, deny, expected in cases:
            rules = parseRules(order, allow, deny)
            self.assertEqual(allowed(rules, "/run/proxyws.sock"), expected, allow)

    def test_clientAddress(self):
        """
        L{clientAddress} parses a client address, turning an IPv4-mapped one
        into IPv4.
        """
        cases = [
            ("10.1.2.3", "10.1.2.3"),
            ("::ffff:10.1.2.3", "10.1.2.3"),
            ("2001:DB8::1", "2001:db8::1"),
            ("unix", None),
            ("", None),
        ]
        for address, expected in cases:
            result = clientAddress(address)
            self.assertEqual(None if result is None else str(result), expected)


class ParseRulesTests(SynchronousTestCase):
    """
    L{parseRules} and L{parseRequire} build L{AccessRules} values and
    explain the entries they refuse.
    """

    def test_orderSpellings(self):
        """
        The order is read in any case and with any spaces;
        C{mutual-failure} is Apache's synonym of C{allow,deny}.
        """
        cases = [
            ("allow,deny", ALLOW_DENY),
            ("Allow,Deny", ALLOW_DENY),
            (" allow , deny ", ALLOW_DENY),
            ("DENY,ALLOW", DENY_ALLOW),
            ("Deny, Allow", DENY_ALLOW),
            ("Mutual-failure", ALLOW_DENY),
        ]
        for order, expected in cases:
            self.assertEqual(parseRules(order, [], []).order, expected, order)

    def test_networks(self):
        """
        Entries become networks: single addresses are /32 or /128, a netmask
        is read as its prefix length, and IPv4-mapped networks become IPv4.
        """
        rules = parseRules(
            "allow,deny",
            ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1",
             "172.16.0.0/255.240.0.0", "::ffff:10.0.0.0/104"],
            ["all", "192.0.2.0/24"],
        )
        self.assertFalse(rules.allow.everything)
        self.assertEqual(
            rules.allow.networks,
            tuple(
                ip_network(n)
                for n in ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32",
                          "::1/128", "172.16.0.0/12", "10.0.0.0/8"]
            ),
        )
        self.assertTrue(rules.deny.everything)
        self.assertEqual(rules.deny.networks, (ip_network("192.0.2.0/24"),))

    def test_frozenValue(self):
        """
        Rules are frozen values, equal when parsed from the same settings.
        """
        rules = parseRules("deny,allow", ["10.0.0.0/8"], ["all"])
        self.assertEqual(rules, parseRules("Deny,Allow", ["10.0.0.0/8"], ["all"]))
        self.assertNotEqual(rules, parseRules("allow,deny", ["10.0.0.0/8"], ["all"]))
        self.assertRaises(attr.exceptions.FrozenInstanceError,
                          setattr, rules, "order", ALLOW_DENY)

    def test_require(self):
        """
        L{parseRequire} allows exactly the clients one of its entries
        matches, as Apache 2.4's C{Require ip}.
        """
        rules = parseRequire(["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"])
        cases = [
            ("10.9.8.7", True),
            ("::ffff:10.9.8.7", True),
            ("2001:db8:5::1", True),
            ("192.0.2.7", True),
            ("192.0.2.8", False),
            ("2001:db9::1", False),
            ("172.16.0.1", False),
        ]
        for address, expected in cases:
            self.assertEqual(allowed(rules, address), expected, address)
        self.assertEqual(rules, parseRules("allow,deny", ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"], []))
        self.assertFalse(allowed(parseRequire([]), "10.0.0.1"))

    def test_errors(self):
        """
        Each unusable setting raises L{AccessRuleError} naming the bad value,
        what was expected, and where it is.
        """
        expected = "is not an IP address, a CIDR such as '10.0.0.0/8', or 'all'"
        cases = [
            # order, allow, deny, key path, message
            ("allow,deny", ["10.0.0.300/8"], [], "access.allow[0]",
             "'10.0.0.300/8' " + expected),
            ("allow,deny", ["all", "example.com"], [], "access.allow[1]",
             "'example.com' " + expected),
            ("allow,deny", ["10.0.0.0/33"], [], "access.allow[0]",
             "'10.0.0.0/33' " + expected),
            ("allow,deny", ["2001:db8::/129"], [], "access.allow[0]",
             "'2001:db8::/129' " + expected),
            ("allow,deny", [""], [], "access.allow[0]", "'' " + expected),
            ("allow,deny", [" 10.0.0.1"], [], "access.allow[0]",
             "' 10.0.0.1' " + expected),
            ("allow,deny", [], ["10.0.0.0/8", 10], "access.deny[1]",
             "10 " + expected),
            ("allow,deny", [], ["env=internal"], "access.deny[0]",
             "'env=internal' " + expected),
            ("allow,deny", ["10.0.0.1/8"], [], "access.allow[0]",
             "'10.0.0.1/8' has host bits set; write the network as '10.0.0.0/8'"),
            ("deny,allow", [], ["2001:db8::1/32"], "access.deny[0]",
             "'2001:db8::1/32' has host bits set; write the network as "
             "'2001:db8::/32'"),
            ("allow,deny", ["192.168"], [], "access.allow[0]",
             "'192.168' is an Apache partial address; write it as the CIDR "
             "'192.168.0.0/16'"),
            ("allow,deny", ["10."], [], "access.allow[0]",
             "'10.' is an Apache partial address; write it as the CIDR "
             "'10.0.0.0/8'"),
            ("allow,deny", ["192.168.1"], [], "access.allow[0]",
             "'192.168.1' is an Apache partial address; write it as the CIDR "
             "'192.168.1.0/24'"),
            ("allow,deny", ["300.1"], [], "access.allow[0]",
             "'300.1' " + expected),
            ("allow,deny", 5, [], "access.allow",
             "5 is not a list of IP addresses, CIDRs or 'all'"),
            ("allow", [], [], "access.order",
             "'allow' is not 'allow,deny' or 'deny,allow'"),
            ("allow;deny", [], [], "access.order",
             "'allow;deny' is not 'allow,deny' or 'deny,allow'"),
            ("", [], [], "access.order",
             "'' is not 'allow,deny' or 'deny,allow'"),
            (None, [], [], "access.order",
             "None is not 'allow,deny' or 'deny,allow'"),
        ]
        for order, allow, deny, keyPath, message in cases:
            error = self.assertRaises(AccessRuleError, parseRules, order, allow, deny)
            self.assertEqual((error.keyPath, str(error)), (keyPath, message))
            self.assertEqual(error.message, message)
            self.assertIsInstance(error, ValueError)

    def test_errorKeyPath(self):
        """
        The key path of an error starts with the C{keyPath} given.
        """
        error = self.assertRaises(
            AccessRuleError, parseRules, "allow,deny", [], ["all", "x"], "route[2]"
        )
        self.assertEqual(error.keyPath, "route[2].deny[1]")
        error = self.assertRaises(
            AccessRuleError, parseRules, "allowdeny", [], [], keyPath="host[0]"
        )
        self.assertEqual(error.keyPath, "host[0].order")

    def test_requireErrors(self):
        """
        L{parseRequire} explains its bad entries as L{parseRules} does, at
        the key C{require_ip}.
        """
        error = self.assertRaises(
            AccessRuleError, parseRequire, ["10.0.0.0/8", "10.0.0.1/8"]
        )
        self.assertEqual(
            (error.keyPath, str(error)),
            ("access.require_ip[1]",
             "'10.0.0.1/8' has host bits set; write the network as '10.0.0.0/8'"),
        )
        error = self.assertRaises(
            AccessRuleError, parseRequire, ["nope"], keyPath="route[0]"
        )
        self.assertEqual(
            (error.keyPath, str(error)),
            ("route[0].require_ip[0]",
             "'nope' is not an IP address, a CIDR such as '10.0.0.0/8', or 'all'"),
        )


def makeHashes():
    """
    Real hashes of each supported type, made cheaply (lowest cost and
    rounds), as C{(user, password, hash line)}.
    """
    bcrypt2b = bcrypt.hashpw(b"bob-pw", bcrypt.gensalt(rounds=4))
    return [
        (b"alice", b"alice-pw",
         b"$2y$" + bcrypt.hashpw(b"alice-pw", bcrypt.gensalt(rounds=4))[4:]),
        (b"bob", b"bob-pw", bcrypt2b),
        (b"carol", b"carol-pw",
         b"$2a$" + bcrypt.hashpw(b"carol-pw", bcrypt.gensalt(rounds=4))[4:]),
        (b"dave", b"dave-pw",
         sha256_crypt.using(rounds=1000).hash("dave-pw").encode("ascii")),
        (b"erin", b"erin-pw",
         sha512_crypt.using(rounds=1000).hash("erin-pw").encode("ascii")),
        (b"frank", b"frank-pw", apr_md5_crypt.hash("frank-pw").encode("ascii")),
        (b"grace", b"grace-pw",
         b"{SHA}" + base64.b64encode(hashlib.sha1(b"grace-pw").digest())),
        ("jürgen".encode("utf-8"), "pässword".encode("utf-8"),
         bcrypt.hashpw("pässword".encode("utf-8"), bcrypt.gensalt(rounds=4))),
        (b"long", b"x" * 80, bcrypt.hashpw(b"x" * 72, bcrypt.gensalt(rounds=4))),
    ]


class RecordingHash:
    """
    A parsed hash that records the passwords it checks.

    @ivar checked: the passwords checked, in order.
    """

    def __init__(self):
        self.checked = []

    def verify(self, password):
        """
        Record C{password}.

        @return: L{True}, which L{Htpasswd.check} must ignore.
        """
        self.checked.append(password)
        return True


class HtpasswdTests(SynchronousTestCase):
    """
    L{Htpasswd} reads Apache htpasswd files and checks passwords.
    """

    def setUp(self):
        """
        Write an htpasswd file with comments, blank lines, CRLF line ends
        and every supported hash type.
        """
        self.hashes = makeHashes()
        lines = [b"# users of proxyws", b""]
        for user, _, hashed in self.hashes:
            lines.append(user + b":" + hashed)
        lines[3] += b"\r"
        lines[4] = b"  " + lines[4] + b"  "
        lines[5] += b":a comment field"
        lines.append(b"   # indented comment")
        self.path = os.path.join(temporaryDirectory(self), "htpasswd")
        with open(self.path, "wb") as f:
            f.write(b"\n".join(lines) + b"\n")
        self.htpasswd = Htpasswd.load(self.path)

    def test_users(self):
        """
        Every user of the file is read, comments and blank lines skipped.
        """
        self.assertEqual(
            sorted(self.htpasswd.hashes), sorted(user for user, _, _ in self.hashes)
        )
        self.assertEqual(self.htpasswd.path, self.path)

    def test_rightPasswords(self):
        """
        Each user's password is accepted, whatever the type of its hash.
        """
        for user, password, _ in self.hashes:
            self.assertTrue(self.htpasswd.check(user, password), user)

    def test_wrongPasswords(self):
        """
        Wrong passwords, another user's password and empty passwords are
        refused (C{long}, whose password bcrypt truncates, has its own test).
        """
        for user, password, _ in self.hashes[:-1]:
            for wrong in [password + b"!", password[:-1], b"", b"alice-pw"]:
                if user != b"alice" or wrong != b"alice-pw":
                    self.assertFalse(self.htpasswd.check(user, wrong), (user, wrong))

    def test_longBcryptPassword(self):
        """
        As in Apache, bcrypt reads the first 72 bytes of a password; longer
        passwords do not raise.
        """
        self.assertTrue(self.htpasswd.check(b"long", b"x" * 72))
        self.assertTrue(self.htpasswd.check(b"long", b"x" * 72 + b"anything"))
        self.assertFalse(self.htpasswd.check(b"long", b"x" * 71))

    def test_refusedPasswords(self):
        """
        A password passlib refuses (a NUL byte, over 4096 bytes) is wrong,
        not an exception.
        """
        for user in [b"dave", b"erin", b"frank"]:
            self.assertFalse(self.htpasswd.check(user, user + b"-pw\x00"), user)
            self.assertFalse(self.htpasswd.check(user, b"y" * 5000), user)
        self.assertFalse(self.htpasswd.check(b"alice", b"alice-pw\x00"))
        self.assertFalse(self.htpasswd.check(b"grace", b"grace-pw\x00"))

    def test_unknownUser(self):
        """
        An unknown user is refused, even with another user's password, and
        the user names are matched exactly.
        """
        for user in [b"nobody", b"Alice", b"alice ", b"", "jurgen".encode()]:
            self.assertFalse(self.htpasswd.check(user, b"alice-pw"), user)

    def test_unknownUserChecksDummy(self):
        """
        For an unknown user the password is still checked, against the dummy
        hash, and the result ignored.
        """
        dummy = RecordingHash()
        htpasswd = Htpasswd(path="x", hashes={}, dummy=dummy)
        self.assertFalse(htpasswd.check(b"nobody", b"secret"))
        self.assertEqual(dummy.checked, [b"secret"])

    def test_dummyLikeFirstEntry(self):
        """
        The dummy hash has the type and cost of the file's first entry, so
        an unknown user takes as long as a known one; an empty file gets a
        bcrypt dummy.
        """
        bcrypt10 = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=6))
        sha512 = sha512_crypt.using(rounds=1234).hash("pw").encode("ascii")
        sha1 = b"{SHA}" + base64.b64encode(hashlib.sha1(b"pw").digest())
        apr1 = apr_md5_crypt.hash("pw").encode("ascii")

        dummy = parseHtpasswd(b"u:" + bcrypt10 + b"\nv:" + sha1 + b"\n").dummy
        self.assertEqual(dummy.hashed[:7], b"$2b$06$")
        self.assertNotEqual(dummy.hashed, bcrypt10)

        dummy = parseHtpasswd(b"u:" + sha512 + b"\n").dummy
        self.assertTrue(dummy.hashed.startswith("$6$rounds=1234$"))
        self.assertNotEqual(dummy.hashed, sha512.decode("ascii"))

        dummy = parseHtpasswd(b"u:" + apr1 + b"\n").dummy
        self.assertTrue(dummy.hashed.startswith("$apr1$"))
        self.assertIs(dummy.handler, apr_md5_crypt)

        dummy = parseHtpasswd(b"u:" + sha1 + b"\n").dummy
        self.assertNotEqual(dummy.digest, hashlib.sha1(b"pw").digest())
        self.assertEqual(len(dummy.digest), 20)

        empty = parseHtpasswd(b"# nobody\n\n")
        self.assertEqual(empty.hashes, {})
        self.assertEqual(empty.dummy.hashed[:7], b"$2b$05$")
        self.assertFalse(empty.check(b"anyone", b"pw"))

    def test_malformed(self):
        """
        A malformed line, an unsupported or malformed hash and a repeated
        user are errors naming the file and the line.
        """
        good = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4))
        unsupported = (
            "the hash of user 'alice' is of an unsupported type; supported are "
            "bcrypt ($2y$, $2b$, $2a$), SHA-crypt ($5$, $6$), apr1 ($apr1$) "
            "and {SHA}; make one with 'htpasswd -B'"
        )
        cases = [
            (b"alice", "'f' line 3: expected 'user:hash'"),
            (b":" + good, "'f' line 3: expected 'user:hash'"),
            (b"alice:", "'f' line 3: expected 'user:hash'"),
            (b"alice::" + good, "'f' line 3: expected 'user:hash'"),
            # DES crypt, MD5-crypt, plain text
            (b"alice:abJnggxhB/yWI", "'f' line 3: " + unsupported),
            (b"alice:$1$saltsalt$2vnaRpHa6Jxjz5n83ok8Z0", "'f' line 3: " + unsupported),
            (b"alice:secret", "'f' line 3: " + unsupported),
            (b"alice:$2y$05$short",
             "'f' line 3: the bcrypt hash of user 'alice' is malformed"),
            (b"alice:$2y$03$" + good[7:],
             "'f' line 3: the bcrypt hash of user 'alice' is malformed"),
            (b"alice:$6$salt$",
             "'f' line 3: the SHA-512-crypt hash of user 'alice' is malformed"),
            (b"alice:$5$salt$x",
             "'f' line 3: the SHA-256-crypt hash of user 'alice' is malformed"),
            (b"alice:$apr1$salt$",
             "'f' line 3: the apr1 hash of user 'alice' is malformed"),
            (b"alice:{SHA}abc",
             "'f' line 3: the {SHA} hash of user 'alice' is malformed"),
            (b"alice:{SHA}" + base64.b64encode(b"short"),
             "'f' line 3: the {SHA} hash of user 'alice' is malformed"),
            (b"alice:$6$s\xc3\xa4lt$abc",
             "'f' line 3: the SHA-512-crypt hash of user 'alice' is malformed"),
            (b"bob:" + good,
             "'f' line 3: user 'bob' appears again (first on line 2)"),
        ]
        for line, message in cases:
            data = b"# users\nbob:" + good + b"\n" + line + b"\nzed:" + good + b"\n"
            error = self.assertRaises(ValueError, parseHtpasswd, data, "f")
            self.assertEqual(str(error), message, line)

    def test_loadMissingFile(self):
        """
        A file that cannot be read is a L{ValueError} saying why.
        """
        path = os.path.join(temporaryDirectory(self), "htpasswd")
        error = self.assertRaises(ValueError, Htpasswd.load, path)
        self.assertEqual(
            str(error), "cannot read {!r}: No such file or directory".format(path)
        )

    def test_loadMalformedNamesPath(self):
        """
        L{Htpasswd.load} names the file in its errors.
        """
        path = os.path.join(temporaryDirectory(self), "htpasswd")
        with open(path, "wb") as f:
            f.write(b"# one\n\nalice:plain\n")
        error = self.assertRaises(ValueError, Htpasswd.load, path)
        self.assertTrue(str(error).startswith("{!r} line 3: ".format(path)))


class BasicAuthTests(SynchronousTestCase):
    """
    L{parseBasicAuth} reads C{Authorization} headers and L{challenge}
    writes C{WWW-Authenticate} ones.
    """

    def test_parseBasicAuth(self):
        """
        Each header value gives the expected user and password, or L{None}.
        """
        cases = [
            (b"Basic " + b64("alice:secret"), (b"alice", b"secret")),
            (b"basic " + b64("alice:secret"), (b"alice", b"secret")),
            (b"BASIC " + b64("alice:secret"), (b"alice", b"secret")),
            (b"  Basic   " + b64("alice:secret") + b"  ", (b"alice", b"secret")),
            (b"Basic\t" + b64("alice:secret"), (b"alice", b"secret")),
            (b"Basic " + b64("alice:a:b:c"), (b"alice", b"a:b:c")),
            (b"Basic " + b64("alice:"), (b"alice", b"")),
            (b"Basic " + b64(":pw"), (b"", b"pw")),
            (b"Basic " + b64("jürgen:pässword"),
             ("jürgen".encode("utf-8"), "pässword".encode("utf-8"))),
            (b"Basic " + b64("alice"), None),
            (b"Basic " + b64("alice:pw").rstrip(b"="), None),
            (b"Basic YWxp!2U6cHc=", None),
            (b"Basic YWxpY2U6cHc=garbage", None),
            # Not canonical: extra padding, stray bits after the last byte.
            (b"Basic " + b64("alice:pw") + b"=", None),
            (b"Basic " + b64("alice:pw1") + b"==", None),
            (b"Basic YWxpY2U6cHd=", None),
            (b"Basic", None),
            (b"Basic ", None),
            (b"Basic " + b64("a:b") + b" " + b64("c:d"), None),
            (b"Bearer " + b64("alice:secret"), None),
            (b"Basically " + b64("alice:secret"), None),
            (b64("alice:secret"), None),
            (b"", None),
            (None, None),
        ]
        for value, expected in cases:
            self.assertEqual(parseBasicAuth(value), expected, value)

    def test_challenge(self):
        """
        The realm is quoted, its quotes and backslashes escaped, and the
        charset is UTF-8.
        """
        cases = [
            ("proxyws", b'Basic realm="proxyws", charset="UTF-8"'),
            ("", b'Basic realm="", charset="UTF-8"'),
            ('say "hi"', b'Basic realm="say \\"hi\\"", charset="UTF-8"'),
            ("back\\slash", b'Basic realm="back\\\\slash", charset="UTF-8"'),
            ('\\"', b'Basic realm="\\\\\\"", charset="UTF-8"'),
            ("Zürich", 'Basic realm="Zürich", charset="UTF-8"'.encode("utf-8")),
        ]
        for realm, expected in cases:
            self.assertEqual(challenge(realm), expected, realm)

    def test_challengeControlCharacters(self):
        """
        A realm with a control character could split the header: it is a
        L{ValueError}.
        """
        cases = [
            ("a\r\nSet-Cookie: x",
             "the realm 'a\\r\\nSet-Cookie: x' may not hold control characters"),
            ("tab\there", "the realm 'tab\\there' may not hold control characters"),
            ("del\x7f", "the realm 'del\\x7f' may not hold control characters"),
        ]
        for realm, message in cases:
            error = self.assertRaises(ValueError, challenge, realm)
            self.assertEqual(str(error), message)
