"""
Property tests, with Hypothesis: config loading, path normalization,
routing, header rewriting and the check of C{match} expressions, each on
many generated inputs.

Every test is deterministic (C{derandomize=True}, no example database) and
bounded in its number of examples, so that the file runs in seconds.  Each
test's docstring states its property.
"""

import json
import math
import re
import tomllib

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from proxyws import patterns
from proxyws.config import parseConfig, problemsOf
from proxyws.errors import BadRequest, ConfigError
from proxyws.headers import HOP_BY_HOP, requestHeaders, responseFields, rewriteURL
from proxyws.routing import Router, compileTemplate, expandTemplate, normalizePath
from proxyws.schema import (
    ADMIN_KEYS, DEMO_KEYS, HOST_KEYS, LISTEN_KEYS, ROUTE_KEYS, SERVER_KEYS, TOP_KEYS,
    UPSTREAM_KEYS)

from .backtracking import Model
from .test_patterns import REFUSED


def bounded(examples):
    """
    Hypothesis settings: C{examples} examples, the same on every run.
    """
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ---------------------------------------------------------------------------
# Config documents: the schema's keys with arbitrary values, written as TOML.
# ---------------------------------------------------------------------------

# Values that reach the checks past the type tests, and values that were
# trouble once.
_INTERESTING = [
    "", "-", "/", "/app/", "/app", "app/", "http://b/", "https://b:8443/x/",
    "ws://127.0.0.1:1/$1", "htp://x", "http://b/$2", "^/(.*)", "^/re/(a+)+$",
    "(", "::", "127.0.0.1", "localhost", "auto", "1.2", "1.0", "none", "required",
    "*.example.com", "a.example", "deny,allow", "all", "10.0.0.0/8", "10.1",
    "a" * 3000, "\n", "\x00", "é", "\U0001f600" * 40, 0, -1, 1, 65535, 65536,
    1e-300, 0.05, 0.5, 1e9, 1e10, 10 ** 30, float("inf"), True,
]

_SCALARS = st.one_of(
    st.sampled_from(_INTERESTING),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
)

_KNOWN = sorted(
    set(SERVER_KEYS) | set(LISTEN_KEYS) | set(ROUTE_KEYS) | set(HOST_KEYS) | set(DEMO_KEYS)
    | {"cert", "key", "ca", "htpasswd", "realm", "port", "status"}
)

_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(_KNOWN) | st.text(max_size=6), children, max_size=4),
    ),
    max_leaves=8,
)


def _table(keys):
    return st.dictionaries(
        st.sampled_from(sorted(keys)) | st.text(max_size=8), _VALUES, max_size=6
    )


_ROUTE = _table(ROUTE_KEYS)
_HOST = st.builds(
    lambda table, routes: dict(table, route=routes) if routes else table,
    _table(HOST_KEYS),
    st.lists(_ROUTE, max_size=2),
)
_DOCUMENT_TABLES = {
    "server": _table(SERVER_KEYS),
    "listen": st.lists(_table(LISTEN_KEYS), max_size=3),
    "route": st.lists(_ROUTE, max_size=3),
    "host": st.lists(_HOST, max_size=2),
    "demo": _table(DEMO_KEYS),
    "admin": _table(ADMIN_KEYS),
    "upstream": st.lists(_table(UPSTREAM_KEYS), max_size=2),
    "extra": _VALUES,
}
_DOCUMENTS = st.fixed_dictionaries({}, optional=_DOCUMENT_TABLES)


def tomlValue(value):
    """
    A value as TOML (arrays and inline tables).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # JSON's escapes are TOML's; DEL must be escaped too.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(tomlValue(v) for v in value) + "]"
    return "{" + ", ".join(
        "{} = {}".format(tomlValue(k), tomlValue(v)) for k, v in value.items()) + "}"


def tomlDocument(document):
    """
    A document as TOML, one top-level key a line.
    """
    return "".join("{} = {}\n".format(tomlValue(k), tomlValue(v)) for k, v in document.items())


class ConfigPropertyTests(SynchronousTestCase):
    """
    Config loading on generated documents.
    """

    @bounded(300)
    @given(_DOCUMENTS)
    def test_loadsOrOneLinePerProblem(self, document):
        """
        Any TOML document built from the schema's keys with arbitrary
        values (wrong types, huge, unicode, nested) either loads or raises
        a L{ConfigError} whose every problem is one bounded line; never any
        other exception.
        """
        text = tomlDocument(document)
        self.assertEqual(set(tomllib.loads(text)), set(document))
        try:
            parseConfig(text, "p.toml")
        except ConfigError as e:
            problems = problemsOf(e)
            self.assertTrue(problems)
            for problem in problems:
                self.assertIsInstance(problem, ConfigError)
                line = str(problem)
                self.assertEqual(line.splitlines(), [line])
                self.assertLessEqual(len(line), 1000, line[:300])
                self.assertTrue(line.startswith("p.toml: "), line)

    @bounded(20)
    @given(st.integers(1, 2000), st.sampled_from(["[", "{a = "]))
    def test_nestingIsOneLine(self, depth, opening):
        """
        Arrays or tables nested to any depth load or give one line.
        """
        closing = "]" if opening == "[" else "}"
        text = "a = " + opening * depth + "1" + closing * depth + "\n" + \
            '[[listen]]\naddress = "::"\nport = 1\n'
        try:
            parseConfig(text, "p.toml")
        except ConfigError as e:
            for problem in problemsOf(e):
                self.assertEqual(str(problem).splitlines(), [str(problem)])
                self.assertLessEqual(len(str(problem)), 1000)

    def test_topKeysCovered(self):
        """
        The generated documents use every top-level table of the schema.
        """
        self.assertLess(set(TOP_KEYS), set(_DOCUMENT_TABLES))


# ---------------------------------------------------------------------------
# Paths and routing.
# ---------------------------------------------------------------------------

_SEGMENTS = st.sampled_from([
    b"", b".", b"..", b"a", b"b", b"app", b"apple", b"%2e", b"%2E", b"%2e%2e", b".%2e",
    b"%2F", b"%2f", b"a%2Fb", b"%41", b"%61pp", b"%7e", b"%7E", b"%20", b"%25", b"%252e",
    b"~", b"x.y", b"..a", b"%C3%A9", b"%00",
])
_PATHS = st.lists(_SEGMENTS, max_size=8).map(lambda segments: b"/" + b"/".join(segments))
_BAD_PIECES = st.sampled_from([b"%", b"%g1", b"%2"])
_ANY_PATHS = st.one_of(
    _PATHS,
    st.tuples(_PATHS, _BAD_PIECES).map(b"".join),
    st.binary(max_size=12).map(lambda b: b"/" + b),
)

_UNRESERVED = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ENCODING = re.compile(rb"%([0-9A-Fa-f]{2})")
_PREFIXES = [b"/", b"/app", b"/app/", b"/a/b", b"/a/b/", b"/ap"]
_LISTEN = '[[listen]]\naddress = "127.0.0.1"\nport = 8080\n'


def _normalized(path):
    try:
        return normalizePath(path)
    except BadRequest:
        return None


def _routes(bodies):
    text = _LISTEN + "".join("\n[[route]]\n" + body + "\n" for body in bodies)
    return parseConfig(text).routes


def _prefixRoute(prefix):
    backend = "http://b/base/" if prefix.endswith(b"/") else "http://b/base"
    return 'path = "{}"\nbackend = "{}"'.format(prefix.decode(), backend)


def _covers(prefix, path):
    """
    Whether a prefix route covers a normalized path, written segment by
    segment (not with proxyws.routing.prefixMatches).
    """
    if prefix.endswith(b"/"):
        return path.startswith(prefix)
    return path == prefix or path.startswith(prefix + b"/")


class PathPropertyTests(SynchronousTestCase):
    """
    L{normalizePath} on generated paths.
    """

    @bounded(400)
    @given(_ANY_PATHS)
    def test_normalForm(self, path):
        """
        A path that normalizes gives a path that starts with C{/}, holds no
        C{.} or C{..} segment and no percent-encoding of an unreserved
        character (the others upper-cased), and normalizes to itself.
        """
        normal = _normalized(path)
        assume(normal is not None)
        self.assertTrue(normal.startswith(b"/"))
        segments = normal.split(b"/")
        self.assertNotIn(b".", segments)
        self.assertNotIn(b"..", segments)
        for encoded in _ENCODING.findall(normal):
            self.assertNotIn(int(encoded, 16), _UNRESERVED, normal)
            self.assertEqual(encoded, encoded.upper(), normal)
        self.assertEqual(normalizePath(normal), normal)

    @bounded(300)
    @given(_PATHS)
    def test_encodedSlashNeverDecoded(self, path):
        """
        C{%2F} is never decoded: the path normalizes as it would with each
        C{%2F} an opaque C{%00}.
        """
        opaque = re.sub(rb"%2[fF]", b"%00", path)
        self.assertEqual(normalizePath(path).replace(b"%2F", b"%00"), normalizePath(opaque))

    @bounded(300)
    @given(st.sampled_from(_PREFIXES), _PATHS, st.sampled_from([None, b"", b"x=1"]))
    def test_prefixRouteTakesWhatItCovers(self, prefix, path, query):
        """
        A prefix route matches exactly the requests whose normalized path it
        covers, and sends the backend's path followed by the rest of it, and
        the query.
        """
        router = Router(_routes([_prefixRoute(prefix)]))
        target = path if query is None else path + b"?" + query
        found = router.route(None, target)
        normal = normalizePath(path)
        self.assertEqual(found is not None, _covers(prefix, normal), (prefix, normal))
        if found is not None:
            base = b"/base/" if prefix.endswith(b"/") else b"/base"
            expected = base + normal[len(prefix):]
            if query is not None:
                expected += b"?" + query
            self.assertEqual(found.target, expected)


_MATCHES = [
    (r"^/(\w*)/(\d*)(.*)$", 3),
    (r"^/([a-z]+)(?:/(x))?(.*)", 3),
    (r"/(a)|/(b)", 2),
    (r"^/app/(.*)", 1),
    (r"\.(png|gif)$", 1),
]


class RoutingPropertyTests(SynchronousTestCase):
    """
    L{Router.route} on generated route tables and requests.
    """

    @bounded(300)
    @given(
        st.lists(st.one_of(
            st.sampled_from(_PREFIXES).map(_prefixRoute),
            st.sampled_from(_MATCHES).map(
                lambda m: "match = '{}'\nbackend = \"http://m/\"".format(m[0])),
        ), min_size=1, max_size=5),
        _PATHS,
    )
    def test_firstMatchInFileOrder(self, bodies, path):
        """
        The route chosen is the first in file order of those that match on
        their own; a prefix route never takes a path outside its prefix (no
        C{/app} route for C{/apple}).
        """
        routes = _routes(bodies)
        found = Router(routes).route(None, path)
        alone = [Router([route]).route(None, path) for route in routes]
        matching = [route for route, match in zip(routes, alone) if match is not None]
        if not matching:
            self.assertIsNone(found)
            return
        self.assertIs(found.route, matching[0])
        if found.route.prefix is not None:
            self.assertTrue(_covers(found.route.prefix, normalizePath(path)))

    @bounded(300)
    @given(
        st.sampled_from(_MATCHES),
        st.lists(st.one_of(st.sampled_from(["x", "/", "-", "?k=", "&"]), st.integers(0, 9)),
                 max_size=6),
        _PATHS,
    )
    def test_groupExpansion(self, match, pieces, path):
        """
        C{$N} in a regex route's backend is the text of group N of the
        match (empty for a group that did not take part).
        """
        expression, groups = match
        template = "/" + "".join(
            "${}".format(min(p, groups)) if isinstance(p, int) else p for p in pieces)
        [route] = _routes(["match = '{}'\nbackend = \"http://m{}\"".format(expression, template)])
        normal = normalizePath(path)
        found = re.search(expression.encode(), normal)
        target = Router([route]).route(None, path)
        self.assertEqual(target is not None, found is not None)
        if found is not None:
            expected = re.sub(
                rb"\$([0-9])", lambda r: found.group(int(r.group(1))) or b"",
                template.encode())
            self.assertEqual(target.target, expected)
            self.assertEqual(expandTemplate(compileTemplate(template.encode()), found), expected)


# ---------------------------------------------------------------------------
# Header rewriting.
# ---------------------------------------------------------------------------

_NAMES = st.one_of(
    st.sampled_from([
        b"Connection", b"Keep-Alive", b"TE", b"Trailer", b"Transfer-Encoding", b"Upgrade",
        b"Proxy-Authorization", b"Proxy-Connection", b"X-Forwarded-For", b"Host",
        b"X-Custom", b"Accept", b"Cookie", b"X-A", b"x-b", b"Content-Length",
    ]),
    st.from_regex(rb"\A[A-Za-z][A-Za-z0-9-]{0,6}\Z"),
)
_CONNECTION = st.lists(
    st.sampled_from([b"close", b"keep-alive", b"X-A", b" x-b ", b"X-Custom", b"Cookie", b""]),
    max_size=3,
).map(b",".join)
_VALUE = st.sampled_from([b"1", b"a, b", b"", b"10.0.0.1", b"x y"])


def _named(items):
    """
    The lower-cased names the Connection fields among C{items} list.
    """
    return {
        token.strip().lower()
        for name, value in items if name.lower() == b"connection"
        for token in value.split(b",")
    }


def _neverPasses(name, named):
    lower = name.lower()
    return lower in HOP_BY_HOP or lower in named or lower.startswith(b"proxy-")


class HeaderPropertyTests(SynchronousTestCase):
    """
    The header rules on generated headers.
    """

    @bounded(300)
    @given(
        st.dictionaries(_NAMES, st.lists(_VALUE, min_size=1, max_size=2), max_size=8),
        _CONNECTION,
        st.sampled_from([b"10.0.0.9", b"::1"]),
        st.booleans(),
    )
    def test_requestHeaders(self, headers, connection, client, preserveHost):
        """
        Of a client's headers, none that is hop-by-hop, named by
        Connection or C{Proxy-*} reaches the backend; the backend gets one
        X-Forwarded-For, ending with the client's address.
        """
        byLower = {}
        for name, values in headers.items():
            byLower.setdefault(name.lower(), (name, values))
        items = list(byLower.values())
        if connection:
            items = [(n, v) for n, v in items if n.lower() != b"connection"]
            items.append((b"Connection", [connection]))
        named = _named([(n, v) for n, values in items for v in values])
        out = requestHeaders(
            items, client, b"https", b"front.example", b"443", b"backend", preserveHost)
        for item in out:
            if any(item is original for original in items):
                self.assertFalse(_neverPasses(item[0], named), item)
        forwarded = [values for name, values in out if name.lower() == b"x-forwarded-for"]
        self.assertEqual(len(forwarded), 1)
        [[value]] = forwarded
        self.assertTrue(value.endswith(client), value)

    @bounded(300)
    @given(st.lists(st.tuples(_NAMES, _VALUE), max_size=8), _CONNECTION)
    def test_responseFields(self, fields, connection):
        """
        Of a backend's response fields, none that is hop-by-hop, named by
        Connection, C{Proxy-*} or Content-Length reaches the client, and
        the others keep their order.
        """
        if connection:
            fields = fields + [(b"Connection", connection)]
        named = _named(fields)
        out = responseFields(fields, b"http://b", b"https://f", None)
        kept = [
            field for field in fields
            if not _neverPasses(field[0], named) and field[0].lower() != b"content-length"
        ]
        self.assertEqual(out, kept)

    @bounded(400)
    @given(
        st.sampled_from([b"/", b"/base/", b"/base", b"/b/c/"]),
        st.sampled_from([b"/", b"/app/", b"/app"]),
        st.sampled_from([
            b"http://backend:8080", b"HTTP://Backend:8080", b"http://backend:80",
            b"http://backend:8080.evil", b"https://backend:8080", b"//backend:8080", b"",
        ]),
        st.sampled_from([b"", b"/", b"/base", b"/base/", b"/base/x?y=1", b"/basement",
                         b"/b/c/d", b"/other", b"x", b"?q"]),
    )
    def test_rewriteURL(self, backendPrefix, frontPrefix, origin, path):
        """
        A URL is rewritten only when it is under the backend origin and its
        path prefix, and then to the same rest under the front origin and
        prefix.
        """
        value = origin + path
        backendOrigin, frontOrigin = b"http://backend:8080", b"https://front.example"
        result = rewriteURL(value, backendOrigin, frontOrigin, (backendPrefix, frontPrefix))
        if result == value:
            return
        if origin == b"":
            self.assertTrue(path.startswith(backendPrefix) and path.startswith(b"/"))
            self.assertEqual(result, frontPrefix + path[len(backendPrefix):])
        else:
            self.assertEqual(origin.lower(), backendOrigin)
            rest = path or b"/"
            self.assertTrue(rest.startswith(backendPrefix), value)
            self.assertEqual(result, frontOrigin + frontPrefix + rest[len(backendPrefix):])


# ---------------------------------------------------------------------------
# The check of match expressions, against a model of the engine.
# ---------------------------------------------------------------------------


def _growth(pattern, prefix, pump, suffix, counts):
    """
    The model's steps on C{prefix + pump * k + suffix} for each C{k}, after
    checking that it agrees with C{re} on each.
    """
    found = []
    for count in counts:
        text = prefix + pump * count + suffix
        model = Model(pattern)
        matched = model.search(text)
        assert matched == bool(re.search(pattern, text)), (pattern, text)
        found.append(model.steps)
    return found


# Expressions a route could use that cannot backtrack catastrophically: each
# a few of these pieces in a row.
_SAFE_PIECES = st.sampled_from([
    rb"a", rb"/", rb"ab", rb"\.", rb"-",
    rb"[a-c]*", rb"[^/]+", rb"\d+", rb"\w*?", rb".*", rb"a?", rb"[a/]{0,3}", rb"x+",
    rb"(?:/[^/]+)*", rb"(?:-[a-z]+)+", rb"(?:,\d+)*", rb"(?:/[^/]*)+",
    rb"(?:ab|cd)", rb"(?:a|/)", rb"(?:x|yz|/)",
    rb"(?>a+)+", rb"(?:a+)++", rb"(?>.*a)", rb"(a++)*", rb"(?:\w+\s?)++",
])


def _loops(pattern):
    """
    The open-ended repeats of an expression, each a factor of the path's
    length in the work on it.
    """
    flags, nodes, maxRepeat = patterns._parse(pattern)
    count = 0
    stack = [nodes]
    while stack:
        for op, argument in stack.pop():
            op = str(op)
            if op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                count += argument[1] >= maxRepeat
                stack.append(argument[2])
            elif op == "SUBPATTERN":
                stack.append(argument[3])
            elif op == "BRANCH":
                stack.extend(argument[1])
            elif op == "ATOMIC_GROUP":
                stack.append(argument)
    return count


class PatternPropertyTests(SynchronousTestCase):
    """
    L{proxyws.patterns.backtrackingRepeat} against a model of Python's
    engine that counts its steps (L{tests.backtracking}).
    """

    def test_refusedAreSlow(self):
        """
        The rule is sound on a table: every refused expression of
        C{tests.test_patterns.REFUSED} has a short input on which the
        engine's work grows exponentially -- more than doubling with each
        two more repetitions of its piece.
        """
        for pattern, _, prefix, pump, suffix in REFUSED:
            self.assertIsNotNone(patterns.backtrackingRepeat(pattern), pattern)
            five, seven, nine = _growth(pattern, prefix, pump, suffix, (5, 7, 9))
            self.assertGreater(seven / five, 2.4, (pattern, five, seven, nine))
            self.assertGreater(nine / seven, 2.4, (pattern, five, seven, nine))

    @bounded(60)
    @given(
        st.booleans(),
        st.lists(_SAFE_PIECES, min_size=1, max_size=3),
        st.booleans(),
        st.sampled_from([b"a", b"/", b"ab", b"/a", b"a/", b"1,", b"-a", b"x"]),
        st.sampled_from([b"", b"!", b"/", b"\n"]),
    )
    def test_acceptedStayPolynomial(self, start, pieces, end, pump, suffix):
        """
        Every accepted expression of a family of safe ones keeps the
        engine's work polynomial: doubling the input multiplies it by at
        most 2 ** (open-ended repeats + 2) (one factor of the length per
        repeat, one for the search's start positions, one for the walk),
        far below the growth of an exponential one.
        """
        pattern = (b"^" if start else b"") + b"".join(pieces) + (b"$" if end else b"")
        loops = _loops(pattern)
        assume(loops <= 2)
        self.assertIsNone(patterns.backtrackingRepeat(pattern), pattern)
        eight, sixteen = _growth(pattern, b"", pump, suffix, (8, 16))
        self.assertLessEqual(sixteen / eight, 2 ** (loops + 2), (pattern, pump, suffix))
