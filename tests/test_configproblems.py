"""
Tests for finding every problem of a config file (L{proxyws.config}):
each table checked on its own, the problems in file order, and the checks
of what the named files hold (L{checkConfig}, L{loadAndCheck}).
"""

import os
import shutil
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from proxyws.schema import LISTEN_KEYS
from proxyws.schema import ROUTE_KEYS
from proxyws.config import (
    ConfigProblems, checkConfig, loadAndCheck, loadConfig, parseConfig, problemsOf)
from proxyws.errors import ConfigError
from proxyws.reader import oneLine, shown

from . import certs

LISTEN = '[[listen]]\naddress = "127.0.0.1"\nport = 8080\n'


def problemTexts(text, filename="p.toml"):
    """
    The problems of a config text, as lines.
    """
    try:
        parseConfig(text, filename)
    except ConfigProblems as e:
        return [str(p) for p in e.problems]
    return []


class EveryProblemTests(SynchronousTestCase):
    """
    L{parseConfig} reports every problem of a file, in file order, and
    keeps C{str()} the first problem's line.
    """

    def test_oneProblem(self):
        """
        One problem: C{str()} is its line, C{problems} lists it alone, and
        the error keeps its file, key and message.
        """
        error = self.assertRaises(
            ConfigError, parseConfig, LISTEN + 'tls = "x"\n', "p.toml")
        self.assertIsInstance(error, ConfigProblems)
        self.assertEqual(str(error), "p.toml: listen[0].tls: 'x' is not a table")
        self.assertEqual([str(p) for p in error.problems], [str(error)])
        self.assertEqual(
            (error.filename, error.keyPath, error.message),
            ("p.toml", "listen[0].tls", "'x' is not a table"))

    def test_everyTable(self):
        """
        Each table is checked on its own: a problem in one does not hide
        those of the others.
        """
        text = """\
zzz = 1

[server]
client_timeout = 0.5
workers = 0

[[listen]]
address = "localhost"
port = 80

[[listen]]
address = "::"
port = 80

[[route]]
path = "app/"
backend = "http://b/"

[[route]]
path = "/"
backend = "ftp://b/"

[[host]]
names = "a.example"
default = "yes"

[[host.route]]
path = "/"
bakend = "http://b/"

[demo]
port = -1
"""
        self.assertEqual(problemTexts(text), [
            "p.toml: zzz: unknown key; known keys here are admin, demo, host, listen, "
            "route, server, upstream",
            "p.toml: server.client_timeout: 0.5 is not a number of seconds from 1 to 1e9",
            "p.toml: server.workers: 0 is not a number of processes from 1 to 256, "
            "or 'auto'",
            "p.toml: listen[0].address: 'localhost' is not an IPv4 or IPv6 address "
            "such as '127.0.0.1' or '::'",
            "p.toml: route[0].path: 'app/' is not a path starting with '/'",
            "p.toml: route[1].backend: 'ftp://b/' is not a URL with scheme http, "
            "https, ws or wss",
            "p.toml: host[0].default: 'yes' is not true or false",
            "p.toml: host[0].route[0].bakend: unknown key (did you mean 'backend'?); "
            "known keys here are " + ", ".join(sorted(ROUTE_KEYS)),
            "p.toml: demo.port: -1 is not a port number from 0 to 65535",
        ])

    def test_fileOrder(self):
        """
        Problems are listed in the order their tables come in the file,
        whatever order they are checked in.
        """
        text = '[[route]]\npath = "x"\nbackend = "http://b/"\n\n' + \
            '[[listen]]\naddress = "127.0.0.1"\nport = "80"\n\n' + \
            '[server]\nworkers = 0\n'
        self.assertEqual(problemTexts(text), [
            "p.toml: route[0].path: 'x' is not a path starting with '/'",
            "p.toml: listen[0].port: '80' is not a port number from 0 to 65535",
            "p.toml: server.workers: 0 is not a number of processes from 1 to 256, "
            "or 'auto'",
        ])
        error = self.assertRaises(ConfigProblems, parseConfig, text, "p.toml")
        self.assertEqual(str(error), "p.toml: route[0].path: 'x' is not a path "
                         "starting with '/'")

    def test_everyKeyOfATable(self):
        """
        Every unknown key and every bad value of one table is reported.
        """
        self.assertEqual(problemTexts(
            '[[listen]]\naddress = 1\nport = "x"\nhsts = ""\n'), [
            "p.toml: listen[0].address: 1 is not an IPv4 or IPv6 address such as "
            "'127.0.0.1' or '::'",
            "p.toml: listen[0].port: 'x' is not a port number from 0 to 65535",
            "p.toml: listen[0].hsts: '' is not printable ASCII text, as a header "
            "value holds",
        ])

    def test_missingKeys(self):
        """
        Every missing required key is reported, but not one that a
        misspelt key was meant to be.
        """
        self.assertEqual(problemTexts("[[listen]]\n"), [
            "p.toml: listen[0].address: is required and missing",
            "p.toml: listen[0].port: is required and missing",
        ])
        self.assertEqual(problemTexts('[[listen]]\nadress = "::"\n'), [
            "p.toml: listen[0].adress: unknown key (did you mean 'address'?); known "
            "keys here are " + ", ".join(sorted(LISTEN_KEYS)),
            "p.toml: listen[0].port: is required and missing",
        ])

    def test_brokenTableSkippedAcrossTables(self):
        """
        A table with a problem is left out of the checks across tables: a
        broken listener is not compared with the others, a broken host's
        names are not either; the others still are.
        """
        text = (
            '[[listen]]\naddress = "::1"\nport = "x"\n'
            '[[listen]]\naddress = "::1"\nport = 80\n'
            '[[listen]]\naddress = "::1"\nport = 80\n'
            '[[host]]\nnames = "a.example"\ndefault = 1\n'
            '[[host]]\nnames = "a.example"\n'
            '[[host]]\nnames = "a.example"\n'
        )
        self.assertEqual(problemTexts(text), [
            "p.toml: listen[0].port: 'x' is not a port number from 0 to 65535",
            "p.toml: listen[2]: ::1 port 80 is already used by listen[1]",
            "p.toml: host[0].default: 1 is not true or false",
            "p.toml: host[2].names: 'a.example' is already a name of host[1]",
        ])

    def test_hostRoutesOfABrokenHost(self):
        """
        The routes of a host with a problem are still checked.
        """
        text = LISTEN + '[[host]]\nnames = 1\n[[host.route]]\npath = "/"\n'
        self.assertEqual(problemTexts(text), [
            "p.toml: host[0].names: 1 is not a host name such as 'example.com' or "
            "'*.example.com', or a list of them",
            "p.toml: host[0].route[0].backend: is required and missing",
        ])

    def test_everyCrossTableProblem(self):
        """
        Every repeated default host and host name is reported.
        """
        text = LISTEN + "".join(
            '[[host]]\nnames = ["a.example", "b.example"]\ndefault = true\n'
            for _ in range(3))
        self.assertEqual(problemTexts(text), [
            "p.toml: host[1].default: only one [[host]] may be the default; host[0] "
            "is already",
            "p.toml: host[1].names: 'a.example' is already a name of host[0]",
            "p.toml: host[1].names: 'b.example' is already a name of host[0]",
            "p.toml: host[2].default: only one [[host]] may be the default; host[0] "
            "is already",
            "p.toml: host[2].names: 'a.example' is already a name of host[0]",
            "p.toml: host[2].names: 'b.example' is already a name of host[0]",
        ])

    def test_notTOML(self):
        """
        Text that is not TOML is one problem, of the file as a whole.
        """
        self.assertEqual(problemTexts("[[listen]\n"), [
            "p.toml: not valid TOML: Expected ']]' at the end of an array "
            "declaration (at line 1, column 9)"])

    def test_problemsOf(self):
        """
        L{problemsOf} lists the problems of a L{ConfigProblems}, and a plain
        L{ConfigError} as its only problem.
        """
        single = ConfigError("p.toml", "listen[0]", "cannot listen")
        self.assertEqual(problemsOf(single), [single])
        many = ConfigProblems([single, ConfigError("p.toml", None, "x")])
        self.assertEqual(problemsOf(many), many.problems)
        self.assertEqual(str(many), "p.toml: listen[0]: cannot listen")


class FileCheckTests(SynchronousTestCase):
    """
    L{loadAndCheck} runs every start-up check but binding, and
    L{checkConfig} the checks of what the named files hold, each finding
    every problem.
    """

    def setUp(self):
        self.directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.directory)
        self.path = os.path.join(self.directory, "proxyws.toml")

    def write(self, text):
        """
        Write the config file.
        """
        with open(self.path, "w") as f:
            f.write(text)

    def inDirectory(self, name):
        """
        @return: C{name} in the test's directory.
        """
        return os.path.join(self.directory, name)

    def problems(self, check, *args):
        """
        @return: the lines of the problems C{check(*args)} raises, without
            the file name.
        """
        error = self.assertRaises(ConfigProblems, check, *args)
        prefix = self.path + ": "
        lines = [str(p) for p in error.problems]
        self.assertTrue(all(line.startswith(prefix) for line in lines), lines)
        return [line[len(prefix):] for line in lines]

    def test_goodFiles(self):
        """
        A config whose TLS files and htpasswd file are good passes every
        check.
        """
        certs.writePair(self.directory, "server", certs.makeCertificate(names=["a.example"]))
        certs.writeFile(self.directory, "users", b"alice:{SHA}EfatjsUqKYSrqv18O1FlA3hcIHI=\n")
        self.write(
            LISTEN + 'tls = { cert = "server.crt", key = "server.key" }\n'
            '[[route]]\npath = "/"\nbackend = "http://b/"\n'
            'auth = { htpasswd = "users" }\n')
        config = loadAndCheck(self.path)
        self.assertEqual(config, loadConfig(self.path))
        self.assertIsNone(checkConfig(config))

    def test_everyListenerAndRoute(self):
        """
        Each TLS listener, each https backend and each htpasswd file is
        checked on its own, and a host certificate every listener offers is
        reported once.
        """
        certs.writeFile(self.directory, "empty.crt", b"")
        certs.writeFile(self.directory, "empty.key", b"")
        certs.writePair(self.directory, "good", certs.makeCertificate())
        self.write(
            LISTEN + 'tls = { cert = "empty.crt", key = "empty.key" }\n'
            '[[listen]]\naddress = "::1"\nport = 8443\n'
            'tls = { cert = "good.crt", key = "good.key" }\n'
            '[[route]]\npath = "/a/"\nbackend = "http://b/"\n'
            'auth = { htpasswd = "missing-users" }\n'
            '[[route]]\npath = "/b/"\nbackend = "https://b/"\n'
            'backend_tls = { ca = "missing-ca.pem" }\n'
            '[[route]]\npath = "/c/"\nbackend = "https://c/"\n'
            'backend_tls = { ca = "missing-ca.pem" }\n'
            '[[host]]\nnames = "a.example"\n'
            'tls = { cert = "empty.crt", key = "good.key" }\n')
        config = loadConfig(self.path)
        expected = [
            "listen[0].tls.cert: %r holds no PEM certificate" % self.inDirectory("empty.crt"),
            "route[0].auth.htpasswd: cannot read %r: No such file or directory"
            % self.inDirectory("missing-users"),
            "route[1].backend_tls.ca: cannot read %r: no such file"
            % self.inDirectory("missing-ca.pem"),
            "route[2].backend_tls.ca: cannot read %r: no such file"
            % self.inDirectory("missing-ca.pem"),
            "host[0].tls.cert: %r holds no PEM certificate" % self.inDirectory("empty.crt"),
        ]
        self.assertEqual(self.problems(checkConfig, config), expected)
        self.assertEqual(self.problems(loadAndCheck, self.path), expected)

    def test_parsingAndFilesTogether(self):
        """
        L{loadAndCheck} reports the problems of parsing, of the named files
        and of what they hold together, checking the files of the tables
        that loaded.
        """
        certs.writeFile(self.directory, "empty.crt", b"")
        certs.writeFile(self.directory, "empty.key", b"")
        self.write(
            '[server]\naccess_log = "no/such/dir/access.log"\n'
            + LISTEN + 'tls = { cert = "empty.crt", key = "empty.key" }\n'
            '[[listen]]\naddress = "::1"\nport = 8443\n'
            'tls = { cert = "missing.crt", key = "empty.key" }\n'
            '[[listen]]\naddress = "::1"\nport = 8444\nbad = 1\n'
            'tls = { cert = "missing.crt", key = "empty.key" }\n'
            "[[route]]\nmatch = '(a|a)*$'\nbackend = \"http://b/\"\n")
        self.assertEqual(self.problems(loadAndCheck, self.path), [
            "server.access_log: cannot open %r for appending: No such file or "
            "directory" % self.inDirectory("no/such/dir/access.log"),
            "listen[0].tls.cert: %r holds no PEM certificate"
            % self.inDirectory("empty.crt"),
            "listen[1].tls.cert: cannot read %r: no such file"
            % self.inDirectory("missing.crt"),
            "listen[2].bad: unknown key; known keys here are " + ", ".join(sorted(LISTEN_KEYS)),
            "route[0].match: '(a|a)*$' can take time exponential in the path's "
            "length: '(a(?:|))*' can match the same text in more than one way; make "
            "the inner repeat possessive (a++ rather than a+) or put it in an "
            "atomic group (?>...)",
        ])

    def test_missingFile(self):
        """
        A file that cannot be read is one problem.
        """
        missing = self.inDirectory("missing.toml")
        error = self.assertRaises(ConfigProblems, loadAndCheck, missing)
        self.assertEqual(
            [str(p) for p in error.problems],
            [missing + ": cannot read the file: No such file or directory"])


class ShownTests(SynchronousTestCase):
    """
    How messages show values (L{proxyws.reader.shown}) and keep to one
    bounded line (L{proxyws.reader.oneLine}).
    """

    def test_shown(self):
        """
        A short value is its repr; a long one its first hundred characters
        or so, an ellipsis and its length.
        """
        nested = []
        for _ in range(100000):
            nested = [nested]
        cases = [
            ("abc", "'abc'"),
            (b"abc", "b'abc'"),
            ([1, "x"], "[1, 'x']"),
            ("a" * 100, repr("a" * 100)),
            ("a" * 101, "'" + "a" * 100 + "…' (101 characters)"),
            (b"b" * 200, "b'" + "b" * 100 + "…' (200 characters)"),
            ("\x00" * 1000, "'" + "\\x00" * 25 + "…' (1000 characters)"),
            (list(range(1000)), repr(list(range(1000)))[:100] + "… (4890 characters)"),
            (nested, "<a list nested too deeply to show>"),
            (10 ** 5000, "<an int too large to show>"),
        ]
        for value, expected in cases:
            self.assertEqual(shown(value), expected)

    def test_oneLine(self):
        """
        A message made elsewhere keeps to one line, its long quoted texts
        shortened, and is left alone when it already is.
        """
        short = ConfigError("p.toml", "k", "'x' is wrong")
        self.assertIs(oneLine(short), short)
        broken = oneLine(ConfigError("p.toml", "k", "a\u2028b\nc\x85d"))
        self.assertEqual(str(broken), "p.toml: k: a\\u2028b\\nc\\x85d")
        long = oneLine(ConfigError("p.toml", "k", "%r is not an address" % ("x" * 1000,)))
        self.assertEqual(
            str(long),
            "p.toml: k: '" + "x" * 100 + "…' (1000 characters in the repr) is not "
            "an address")
