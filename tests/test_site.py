"""
Tests for the pure helpers of L{proxyws.site}: the real client behind
trusted proxies, and values safe to put in a header.
"""

import ipaddress

from twisted.trial.unittest import SynchronousTestCase

from proxyws.access import realClient
from proxyws.headers import headerValue

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


class RealClientTests(SynchronousTestCase):
    """
    L{realClient} takes the last X-Forwarded-For address that is not a
    trusted proxy.
    """

    def test_table(self):
        """
        Each row: the header's values, the peer -> the client.
        """
        rows = [
            (None, "10.0.0.1", "10.0.0.1"),
            ([b"203.0.113.7"], "10.0.0.1", "203.0.113.7"),
            ([b"203.0.113.7, 10.1.1.1"], "10.0.0.1", "203.0.113.7"),
            ([b"198.51.100.1, 203.0.113.7"], "10.0.0.1", "203.0.113.7"),
            ([b"198.51.100.1", b"203.0.113.7, 10.2.2.2"], "::1", "203.0.113.7"),
            ([b"garbage, 203.0.113.7"], "10.0.0.1", "203.0.113.7"),
            ([b"203.0.113.7, garbage"], "10.0.0.1", "10.0.0.1"),
            ([b"10.3.3.3"], "10.0.0.1", "10.3.3.3"),
        ]
        for values, peer, client in rows:
            self.assertEqual(realClient(values, peer, TRUSTED), client, (values, peer))


class HeaderValueTests(SynchronousTestCase):
    """
    L{headerValue} refuses text that would break a header.
    """

    def test_table(self):
        """
        Plain text passes as UTF-8; control characters (CR, LF, NUL, DEL)
        make it refused.
        """
        rows = [
            (None, None),
            ("CN=alice,O=Example", b"CN=alice,O=Example"),
            ("CN=\u00e9l\u00e8ve", "CN=\u00e9l\u00e8ve".encode("utf-8")),
            ("CN=alice\r\nX-Admin: 1", None),
            ("CN=alice\nX-Admin: 1", None),
            ("CN=a\x00b", None),
            ("CN=a\x7fb", None),
        ]
        for text, value in rows:
            self.assertEqual(headerValue(text), value, text)
