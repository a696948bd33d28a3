"""
Tests for L{proxyws.patterns}: which C{match} expressions are refused for
backtracking catastrophically, and how the construct is named.
"""

import inspect
import re
import sys

from twisted.trial.unittest import SynchronousTestCase

from proxyws import patterns, patterntext
from proxyws.patterns import backtrackingRepeat

# Refused expressions: (expression, the construct named, and a witness: a
# prefix, a piece repeated k times and a suffix, on which the work doubles,
# or nearly, with each repetition -- tests/test_properties.py checks it on
# a model of the engine).
REFUSED = [
    # A repeat inside a repeat.
    (rb"^/re/(a+)+$", "(a+)+", b"/re/", b"a", b"!"),
    (rb"^(a*)*$", "(a*)*", b"", b"a", b"!"),
    (rb"^(.*a){2,}$", "(.*a){2,}", b"", b"a", b"!"),
    (rb"^(?:x+y?)+$", "(?:x+y?)+", b"", b"x", b"!"),
    (rb"(\w+\s?)+$", "(\\w+\\s?)+", b"", b"a", b"!"),
    (rb"^((ab)+)+$", "((ab)+)+", b"", b"ab", b"!"),
    (rb"^(a?a?)+$", "(a?a?)+", b"", b"a", b"!"),
    (rb"^(a{1,2})+$", "(a{1,2})+", b"", b"a", b"!"),
    (rb"^(?:a+)+?$", "(?:a+)+?", b"", b"a", b"!"),
    (rb"^(?:a*?)+$", "(?:a*?)+", b"", b"a", b"!"),
    (rb"^(?:\w+\d)+$", "(?:\\w+\\d)+", b"", b"1", b"!"),
    (rb"(a+)+b", "(a+)+", b"", b"a", b""),
    (rb"^/x/(?:.*,)+$", "(?:.*,)+", b"/x/", b",", b"!"),
    # Counts that vary split text as open-ended repeats do, up to a bound
    # no path needs to reach.
    (rb"^(?:.{0,16}){0,16}$", "(?:.{0,16}){0,16}", b"", b"a", b"\n!"),
    (rb"^(?:\w{1,16}){1,16}x", "(?:\w{1,16}){1,16}", b"", b"a", b""),
    # A repeated alternation whose branches match the same text.
    (rb"^(a|a)+$", "(a(?:|))+", b"", b"a", b"!"),
    (rb"^(a|b|ab)*$", "(a|b|ab)*", b"", b"ab", b"!"),
    (rb"^(\d+|\w+)*$", "(\\d+|\\w+)*", b"", b"1", b"!"),
    (rb"^(?:a+|b)+$", "(?:a+|b)+", b"", b"a", b"!"),
    (rb"^(?:aa|a)+$", "(?:a(?:a|))+", b"", b"a", b"!"),
    (rb"(?i)^(?:ab|AB)+$", "(?:ab|AB)+", b"", b"ab", b"!"),
    # Inside an atomic group or a possessive repeat, with something after
    # the repeat that can still fail there.
    (rb"^(?>(a+)+$)", "(a+)+", b"", b"a", b"!"),
    (rb"^(?:(?:a|a)c)+$", "(?:a(?:|)c)+", b"", b"ac", b"a!"),
    (rb"^(?=(a+)+$)", "(a+)+", b"", b"a", b"!"),
]

# Everyday routes and safe forms of the refused ones, all accepted.
ACCEPTED = [
    rb"^/(.*/__sockjs__/[0-9]+/.*)",
    rb"^/(.*)",
    rb"\.png$",
    rb"^/user/([^/]+)/(.*)$",
    rb"^/(app1|app2)/(.*)",
    rb"(?i)^/static/.*\.(png|jpe?g|gif)$",
    rb"^/api/v[0-9]+/(.*)$",
    rb"^/([^/]+/)*[^/]+$",
    rb"^/(\d{4})/(\d{2})/(.*)$",
    rb"^/blob/[0-9a-f]{64}$",
    rb"^/(?:\d{1,3}\.){3}\d{1,3}/",
    rb"^/(.*)/(.*)$",
    # A split that each round's first character forces.
    rb"^(?:/[^/]+)+$",
    rb"^(?:/[^/]*)+$",
    rb"^(?:[a-z]+-)+$",
    rb"^(?:a+b)+$",
    # One way only for each text.
    rb"^(a?)+$",
    rb"^(?:a|b?)+$",
    rb"^(?:ab?)+$",
    rb"^(?:a{2})+$",
    # Python's parser turns these into a class, or into ab?.
    rb"^(\w|\d)+$",
    rb"^(a|ab)*$",
    rb"(?i)^(A|a)+$",
    # Possessive repeats and atomic groups give nothing back.
    rb"^/re/(a++)+$",
    rb"^/re/(?>a+)+$",
    rb"^/re/(?:a+)++$",
    rb"^/re/(?:a+)*+$",
    rb"^(?>(a+)+)$",
    rb"^(?:(?:a|a)c)++$",
    # Nothing after the repeat can fail: the first way tried matches.
    rb"(a+)+",
    rb"^/re/(a+)+",
    rb"^(?:a+)+(?:b|)",
    # Large counts.
    rb"a{1000}b",
    rb"(?:a{10}){10}$",
]


class ParserTests(SynchronousTestCase):
    """
    The one private name L{proxyws.patterns} uses is still there.
    """

    def test_privateParser(self):
        """
        C{re._parser.parse} exists and gives the tree the check walks: named
        opcodes the check knows, and an open-ended count.
        """
        try:
            flags, nodes, maxRepeat = patterns._parse(rb"(?i)^(a|bc)+[^x]\d{2,}?(?>y)z*+$")
        except (ImportError, AttributeError) as e:
            self.fail(
                "Python's private regular expression parser (re._parser.parse), "
                "which proxyws.patterns walks to refuse 'match' expressions that "
                "backtrack catastrophically, is gone or changed: {!r}.  Port "
                "proxyws.patterns._parse to what replaced it.".format(e)
            )
        self.assertEqual(flags & re.IGNORECASE, re.IGNORECASE)
        ops = set()

        def walk(nodes):
            for op, argument in nodes:
                ops.add(str(op))
                if str(op) in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                    walk(argument[2])
                elif str(op) == "SUBPATTERN":
                    walk(argument[3])
                elif str(op) == "BRANCH":
                    for branch in argument[1]:
                        walk(branch)
                elif str(op) == "ATOMIC_GROUP":
                    walk(argument)

        walk(nodes)
        self.assertEqual(
            ops,
            {"AT", "MAX_REPEAT", "SUBPATTERN", "LITERAL", "BRANCH", "NOT_LITERAL",
             "MIN_REPEAT", "IN", "ATOMIC_GROUP", "POSSESSIVE_REPEAT"},
        )
        self.assertTrue(ops <= set(patterns._BUILDERS), ops - set(patterns._BUILDERS))
        self.assertGreater(maxRepeat, 65535)


class RuleTests(SynchronousTestCase):
    """
    The rule, on tables of refused and accepted expressions.
    """

    def test_refused(self):
        """
        Each refused expression is refused, naming the outermost repeat that
        can take the same text in more than one way.
        """
        for pattern, construct, _, _, _ in REFUSED:
            self.assertEqual(backtrackingRepeat(pattern), construct, pattern)

    def test_accepted(self):
        """
        Everyday routes and the safe forms are accepted.
        """
        for pattern in ACCEPTED:
            self.assertIsNone(backtrackingRepeat(pattern), pattern)

    def test_unknownConstruct(self):
        """
        A construct the check does not know (from a newer Python) makes
        the expression one that cannot be checked, saying which.
        """
        builders = dict(patterns._BUILDERS)
        del builders["IN"]
        self.patch(patterns, "_BUILDERS", builders)
        error = self.assertRaises(ValueError, backtrackingRepeat, rb"^/[ab]$")
        self.assertEqual(str(error), "it uses IN, which the check does not know")

    def test_tooLarge(self):
        """
        An expression with more states than a route could need cannot be
        checked.
        """
        error = self.assertRaises(ValueError, backtrackingRepeat, b"x" * 20001)
        self.assertEqual(str(error), "it has more than 20000 character matchers")

    def test_nestedTooDeeply(self):
        """
        Groups nested deeper than the check can follow cannot be checked.
        (Python's own parser gives up first on a real expression; here the
        stack is made short.)
        """
        parsed = patterns._parse(b"(" * 80 + b"a" + b")" * 80)
        self.patch(patterns, "_parse", lambda pattern: parsed)
        self.addCleanup(sys.setrecursionlimit, sys.getrecursionlimit())
        sys.setrecursionlimit(len(inspect.stack()) + 100)
        error = self.assertRaises(ValueError, backtrackingRepeat, b"(a)")
        self.assertEqual(str(error), "its groups are nested too deeply")

    def test_counts(self):
        """
        A fixed count has one way (C{(?:[0-9a-f]{64})+} is accepted, a
        large one stood for by two copies); a count that varies is taken
        as open-ended, and a long expression is checked.
        """
        self.assertIsNone(backtrackingRepeat(rb"^/(?:[0-9a-f]{64})+$"))
        self.assertIsNone(backtrackingRepeat(rb"^/(?:a{2}){3}$"))
        self.assertEqual(
            backtrackingRepeat(rb"^(?:a{1,1000})+$"), "(?:a{1,1000})+")
        self.assertEqual(backtrackingRepeat(rb"^(?:a{2,3})+$"), "(?:a{2,3})+")
        self.assertIsNone(backtrackingRepeat(rb"^/" + b"(?:x{1,3}y)" * 200 + b"$"))

    def test_tooComplex(self):
        """
        An expression whose automaton is too dense to compare cheaply
        cannot be checked.
        """
        error = self.assertRaises(
            ValueError, backtrackingRepeat, b"^" + b"[abcd]?" * 100 + b"$")
        self.assertEqual(str(error), "it is too complex to check")


class RenderTests(SynchronousTestCase):
    """
    Constructs are named as expressions, as Python's parser reads them.
    """

    def test_render(self):
        """
        Each node is written back.
        """
        cases = [
            (rb"a.\d\D\s\S\w\W", "a.\\d\\D\\s\\S\\w\\W"),
            (rb"[^a][a-c_][^\d\-]", "[^a][a-c_][^\\d\\-]"),
            (rb"\.\*\x00", "\\.\\*\\x00"),
            (rb"(a)(?:b|cd)(?>e)", "(a)(?:b|cd)(?>e)"),
            (rb"a*b+?c{2}d{2,}e{2,3}+f?", "a*b+?c{2}d{2,}e{2,3}+f?"),
            (rb"(?:ab)*", "(?:ab)*"),
            (rb"^\A$\Z\b\B", "^\\A$\\Z\\b\\B"),
            (rb"(?=a)(?!b)(?<=c)(?<!d)", "(?=a)(?!b)(?<=c)(?<!d)"),
            (rb"(a)\1", "(a)\\1"),
        ]
        for pattern, expected in cases:
            _, nodes, maxRepeat = patterns._parse(pattern)
            self.assertEqual(patterntext.render(nodes, maxRepeat), expected, pattern)


class CostTests(SynchronousTestCase):
    """
    The check itself is cheap.
    """

    def test_checkWork(self):
        """
        Checking every expression of the tables builds few automaton
        states: a count of positions, not of time.
        """
        for pattern in ACCEPTED + [p for p, _, _, _, _ in REFUSED]:
            checker = patterns._Checker(patterns._parse(pattern)[2])
            flags, nodes, _ = patterns._parse(pattern)
            automaton = patterns._Automaton(checker)
            automaton.sequence(nodes, flags)
            self.assertLessEqual(len(automaton.masks), 1000, pattern)
