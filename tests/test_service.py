"""
Tests for the TLS and access pieces that L{proxyws.service} and
L{proxyws.tap} put together at start: key passphrases from a file or the
environment, and htpasswd files named by the config.
"""

import os
import shutil
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from proxyws.config import parseConfig
from proxyws.errors import ConfigError
from proxyws.gate import Gate
from proxyws.tls import BackendTLSPolicy, serverContext

from . import certs

CA = certs.makeAuthority("service test CA")


class PassphraseTests(SynchronousTestCase):
    """
    An encrypted listener key is opened with the passphrase the config
    points to.
    """

    def setUp(self):
        """
        Write a certificate and its key, encrypted with C{b"sesame"}.
        """
        self.directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.directory, True)
        pair = certs.makeCertificate(CA, ["proxy.test"])
        certs.writePair(self.directory, "proxy", pair, passphrase=b"sesame")

    def config(self, tlsExtra):
        """
        A config with one TLS listener.
        """
        text = (
            '[[listen]]\naddress = "127.0.0.1"\nport = 0\n'
            'tls = { cert = "proxy.crt", key = "proxy.key"' + tlsExtra + " }\n"
        )
        return parseConfig(text, os.path.join(self.directory, "p.toml"))

    def test_fromFile(self):
        """
        C{key_passphrase_file} names a file holding the passphrase (a
        trailing newline is not part of it).
        """
        with open(os.path.join(self.directory, "pass"), "w") as f:
            f.write("sesame\n")
        config = self.config(', key_passphrase_file = "pass"')
        self.assertIsNotNone(serverContext(config, config.listeners[0]))

    def test_fromEnvironment(self):
        """
        C{key_passphrase_env} names an environment variable holding it.
        """
        os.environ["PROXYWS_TEST_PASSPHRASE"] = "sesame"
        self.addCleanup(os.environ.pop, "PROXYWS_TEST_PASSPHRASE")
        config = self.config(', key_passphrase_env = "PROXYWS_TEST_PASSPHRASE"')
        self.assertIsNotNone(serverContext(config, config.listeners[0]))

    def test_environmentVariableMissing(self):
        """
        A passphrase variable that is not set stops start-up with one line.
        """
        os.environ.pop("PROXYWS_TEST_NOT_SET", None)
        config = self.config(', key_passphrase_env = "PROXYWS_TEST_NOT_SET"')
        error = self.assertRaises(ConfigError, serverContext, config, config.listeners[0])
        self.assertEqual(
            str(error),
            "{}: listen[0].tls.key_passphrase_env: the environment variable "
            "'PROXYWS_TEST_NOT_SET' is not set".format(config.path),
        )

    def test_passphraseFileMissing(self):
        """
        A passphrase file that cannot be read stops start-up with one line.
        """
        config = self.config(', key_passphrase_file = "nope"')
        error = self.assertRaises(ConfigError, serverContext, config, config.listeners[0])
        self.assertEqual(
            str(error),
            "{}: listen[0].tls.key_passphrase_file: cannot read {!r}: "
            "No such file or directory".format(config.path, os.path.join(self.directory, "nope")),
        )

    def test_wrongPassphrase(self):
        """
        A wrong passphrase is said to be wrong.
        """
        os.environ["PROXYWS_TEST_PASSPHRASE"] = "wrong"
        self.addCleanup(os.environ.pop, "PROXYWS_TEST_PASSPHRASE")
        config = self.config(', key_passphrase_env = "PROXYWS_TEST_PASSPHRASE"')
        error = self.assertRaises(ConfigError, serverContext, config, config.listeners[0])
        self.assertIn("listen[0].tls.key: the passphrase given does not decrypt", str(error))


class StartChecksTests(SynchronousTestCase):
    """
    What is checked before anything listens, beside the config text.
    """

    def setUp(self):
        """
        A directory for the files the configs name.
        """
        self.directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.directory, True)

    def test_htpasswdMissing(self):
        """
        An htpasswd file that cannot be read stops start-up with one line.
        """
        config = parseConfig(
            '[[listen]]\naddress = "127.0.0.1"\nport = 0\n'
            '[[route]]\npath = "/"\nbackend = "http://127.0.0.1:1/"\n'
            'auth = { htpasswd = "users" }\n',
            os.path.join(self.directory, "p.toml"),
        )
        error = self.assertRaises(ConfigError, Gate.forConfig, config)
        self.assertTrue(str(error).startswith(config.path + ": route[0].auth.htpasswd: cannot read"), str(error))

    def test_backendVerifyOffIsAccepted(self):
        """
        C{verify = false} on an https backend builds (and is warned about at
        start, see test_loopback_tls).
        """
        config = parseConfig(
            '[[listen]]\naddress = "127.0.0.1"\nport = 0\n'
            '[[route]]\npath = "/"\nbackend = "https://127.0.0.1:1/"\n'
            "backend_tls = { verify = false }\n",
            os.path.join(self.directory, "p.toml"),
        )
        policy = BackendTLSPolicy(config)
        self.assertIsNotNone(policy(config.routes[0].backend))

    def test_backendTLSOnPlainBackend(self):
        """
        C{backend_tls} on a backend without TLS is a mistake worth a line.
        """
        error = self.assertRaises(
            ConfigError,
            parseConfig,
            '[[listen]]\naddress = "127.0.0.1"\nport = 0\n'
            '[[route]]\npath = "/"\nbackend = "http://127.0.0.1:1/"\n'
            "backend_tls = { verify = false }\n",
            "p.toml",
        )
        self.assertEqual(
            str(error),
            "p.toml: route[0].backend_tls: backend 'http://127.0.0.1:1/' does not use "
            "TLS (https:// or wss://)",
        )
