"""
The README's list of limits (I{Limits and what bad input gets}) against the
schema: every key it names exists, with the default it gives.
"""

import os
import re

from twisted.trial.unittest import SynchronousTestCase

from proxyws import channel, heads, wsmessages, wsrelay
from proxyws.backend import MAX_INTERIM
from proxyws.bodies import CHUNK_EXTENSIONS_LIMIT, CHUNK_LINE_LIMIT
from proxyws.framing import LEADING_EMPTY_LINES
from proxyws.schema import LISTEN_KEYS, ROUTE_KEYS, SERVER_KEYS

from .helpers import ROOT

# A row of a limits table: the table a key is in, the key, its default.
_ROW = re.compile(r"^``\[(server|\[listen\]|\[route\])\] (\w+)``\s+(\S+)", re.M)

# The tables, by the name the README gives them.
_TABLES = {"server": SERVER_KEYS, "[listen]": LISTEN_KEYS, "[route]": ROUTE_KEYS}

# The fixed limits, by the first words of their row, and their values.
_FIXED = {
    "pipelined requests": channel.KEPT_LIMIT,
    "empty lines before a request": LEADING_EMPTY_LINES,
    "chunk-size line": CHUNK_LINE_LIMIT,
    "response head": heads.MAX_HEAD,
    "interim responses": MAX_INTERIM,
    "close handshake": wsrelay.CLOSE_TIMEOUT,
}


def limitsSection():
    """
    @return: the text of the README's section on limits.
    """
    with open(os.path.join(ROOT, "README.rst")) as f:
        text = f.read()
    start = text.index("Limits and what bad input gets\n---")
    return text[start : text.index("\n-----", start + 40)]


def number(text):
    """
    @return: a README default as the schema has it: a number, 0 for "0
        (none)" or "0 (off)".
    """
    return float(text) if "." in text else int(text)


class ReadmeLimitsTests(SynchronousTestCase):
    """
    The README's limits are the schema's.
    """

    def test_configurable(self):
        """
        Every C{[table] key} row names a key of that table with the default
        the schema gives it (a route's timeouts: the C{[server]} key's).
        """
        rows = _ROW.findall(limitsSection())
        self.assertGreater(len(rows), 20)
        found = []
        for table, key, default in rows:
            schemaDefault = _TABLES[table][key][1]
            if schemaDefault is None and table == "[route]":
                schemaDefault = SERVER_KEYS[key][1]
            found.append((table, key, number(default)))
            self.assertEqual(number(default), schemaDefault, (table, key))
        self.assertEqual(len(set(found)), len(found))

    def test_fixed(self):
        """
        Each fixed limit is given with the value the code has.
        """
        section = limitsSection()
        for words, value in _FIXED.items():
            match = re.search(r"^" + re.escape(words) + r".*?\s(\d+)\s", section, re.M)
            self.assertIsNotNone(match, words)
            self.assertEqual(int(match.group(1)), value, words)
        words = " ".join(section.split())
        for text, value in [
            ("the client has 15 seconds", channel.ABORT_TIMEOUT == 15.0),
            ("65536 bytes of chunk extensions", CHUNK_EXTENSIONS_LIMIT == 65536),
            ("or 16 MiB when 0", wsmessages.DEFAULT_MESSAGE_LIMIT == 16 * 2**20),
        ]:
            self.assertTrue(text in words and value, text)
