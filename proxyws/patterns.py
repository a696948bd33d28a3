"""
Regular expressions that cannot backtrack catastrophically.

A C{match} route's expression is searched in every request path by Python's
backtracking engine.  Some expressions make that engine try a number of ways
that doubles with each character of a path that does not match: on
C{'^/re/(a+)+$'} a path of about 30 characters takes seconds, and the whole
server waits.  L{backtrackingRepeat} finds them when the config is loaded.

The rule
========
An expression is refused when a repeat can take the same text in more than
one way and something after it can still fail:

  - a repeat inside a repeat: C{(a+)+}, C{(a*)*}, C{(.*a){2,}},
    C{(?:x+y?)+}, C{(\\w+\\s?)+};
  - a repeated alternation whose branches can match the same text:
    C{(a|a)+}, C{(a|b|ab)*}, C{(\\d+|\\w+)*}.

A path that does not match then makes the engine try every way of splitting
the text between the rounds.  What is accepted:

  - a possessive repeat (C{a++}, C{(?:...)*+}) or an atomic group
    (C{(?>...)}): it gives nothing back, so there is nothing to retry;
  - a split that is forced, as in C{(?:/[^/]+)+}, where each round starts
    with the C{/} that the inner repeat cannot take;
  - an ambiguous repeat that nothing can fail after (C{^/(a+)+} with no C{$}
    or text after it): the first way tried succeeds.

Expressions are checked as Python compiles them: its parser turns C{(\\w|\\d)}
into the character class C{[\\w\\d]} and C{(a|ab)} into C{a(?:|b)}, which
cannot backtrack, so C{(\\w|\\d)+} and C{(a|ab)*} are accepted, while
C{(a|a)+} (two ways to match nothing after the C{a}) is refused.

How
===
The expression is parsed by Python's own parser (L{_parse}) and turned into a
position automaton (Glushkov's construction): a state for each character
matcher and an edge for each way the engine can go from one to the next,
counted -- C{(a|a)} is two ways from C{a} on.  A backtracking engine's work
on a path that fails is the number of automaton paths that read it; that
number grows exponentially with the text exactly when two different cycles
through one state read the same text (the EDA condition of Weber and Seidl).
That shows as a strongly connected component of the automaton's product with
itself that holds both a pair of equal states and a pair of different ways.
Atomic groups, possessive repeats and lookarounds are checked on their own,
and are one opaque state in the automaton around them.

A fixed count is expanded (C{a{3}} is C{aaa}, up to a bound); a count that
can vary by more than one is taken as open-ended (C{a{1,5}} as C{a+}),
which can only add ways, never remove one.
"""

import attr

from .internals import parseExpression
from .patterntext import render

# The bytes a character matcher can take are a 256-bit mask (routes match
# bytes patterns, whose classes are ASCII-only).
_ALL = (1 << 256) - 1


def _mask(characters):
    mask = 0
    for character in characters:
        mask |= 1 << character
    return mask


_DIGIT = _mask(b"0123456789")
_SPACE = _mask(b" \t\n\r\x0b\x0c")
_WORD = _mask(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_UPPER = _mask(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_LOWER = _mask(b"abcdefghijklmnopqrstuvwxyz")

# What each class escape takes.  The locale and Unicode variants (under
# (?L), or never for bytes) are taken as every byte: a larger class can only
# find more ambiguity, never less.
_CATEGORIES = {
    "CATEGORY_DIGIT": _DIGIT,
    "CATEGORY_NOT_DIGIT": _ALL & ~_DIGIT,
    "CATEGORY_SPACE": _SPACE,
    "CATEGORY_NOT_SPACE": _ALL & ~_SPACE,
    "CATEGORY_WORD": _WORD,
    "CATEGORY_NOT_WORD": _ALL & ~_WORD,
    "CATEGORY_LINEBREAK": _mask(b"\n"),
    "CATEGORY_NOT_LINEBREAK": _ALL & ~_mask(b"\n"),
}

_IGNORECASE = 2

# Fixed counts are expanded copy by copy while the count is at most this and
# the automaton stays under _MAX_POSITIONS states; beyond that two copies
# stand for the count (a{64} as aa, a{100,} as a{2,}).
_MAX_COPIES = 16
_MAX_POSITIONS = 400

# Ways are counted up to two: one way is safe, two are what matters.
_MANY = 2

# Past this many states in all, or this many pairs of edges compared, an
# expression is too large to check (a route expression has tens of states).
_MAX_STATES = 20000
_MAX_WORK = 2000000


def _parse(pattern):
    """
    Parse C{pattern} with Python's own regular expression parser (the one
    private name this check needs: L{proxyws.internals.parseExpression};
    C{tests/test_patterns.py} fails, saying so, when an upgrade removes it).

    @param pattern: the expression, as L{bytes}.
    @return: C{(flags, nodes, maxRepeat)}: the global flags, the list of
        C{(opcode, argument)} nodes (opcodes compare as their names with
        L{str}) and the number that stands for an open-ended count.
    @raise re.error: for an expression that does not compile.
    """
    return parseExpression(pattern)


def _fold(mask, flags):
    """
    The bytes C{mask} takes under C{flags}: ASCII letters of both cases
    under C{(?i)}.
    """
    if flags & _IGNORECASE:
        return mask | ((mask & _UPPER) << 32) | ((mask & _LOWER) >> 32)
    return mask


def _classMask(items, flags):
    """
    The bytes a C{[...]} class takes.
    """
    mask = 0
    negate = False
    for op, argument in items:
        op = str(op)
        if op == "NEGATE":
            negate = True
        elif op == "LITERAL":
            mask |= 1 << argument
        elif op == "RANGE":
            mask |= _mask(range(argument[0], argument[1] + 1))
        else:
            mask |= _CATEGORIES.get(str(argument), _ALL)
    mask = _fold(mask, flags)
    return _ALL & ~mask if negate else mask


@attr.s(slots=True)
class _Piece:
    """
    What a piece of an expression adds to the automaton (Glushkov's
    first, last and nullable sets, with ways counted).

    @ivar empty: the number of ways the piece matches the empty text.
    @ivar clean: whether one of those ways passes no assertion (C{$},
        C{\\b}, a lookaround, a back reference) that could fail.
    @ivar first: position -> ways the piece can start there.
    @ivar last: position -> ways the piece can end there.
    @ivar final: the positions after which the piece can end with no
        assertion in the way.
    """

    empty = attr.ib()
    clean = attr.ib()
    first = attr.ib(factory=dict)
    last = attr.ib(factory=dict)
    final = attr.ib(factory=frozenset)


_EMPTY = _Piece(empty=1, clean=True)
_ASSERTION = _Piece(empty=1, clean=False)


def _add(a, b, scale=1):
    total = dict(a)
    if scale:
        for position, ways in b.items():
            total[position] = min(total.get(position, 0) + ways * scale, _MANY)
    return total


class _Automaton:
    """
    The position automaton of one scope (the whole expression, or the
    inside of an atomic group, possessive repeat or lookaround).

    @ivar masks: position -> the bytes it takes.
    @ivar follow: position -> {next position: [ways, repeats]}, where
        C{repeats} are the repeats whose loop the edge is.
    """

    def __init__(self, checker):
        self.checker = checker
        self.masks = []
        self.follow = []

    def position(self, mask):
        """
        A new state, for a character matcher taking the bytes of C{mask}.
        """
        self.checker.states += 1
        if self.checker.states > _MAX_STATES:
            raise ValueError("it has more than {} character matchers".format(_MAX_STATES))
        self.masks.append(mask)
        self.follow.append({})
        number = len(self.masks) - 1
        return _Piece(empty=0, clean=False, first={number: 1}, last={number: 1},
                      final=frozenset([number]))

    def link(self, last, first, repeat=None):
        """
        Add an edge from each of C{last} to each of C{first}.
        """
        for p, waysP in last.items():
            edges = self.follow[p]
            for q, waysQ in first.items():
                edge = edges.setdefault(q, [0, set()])
                edge[0] = min(edge[0] + waysP * waysQ, _MANY)
                if repeat is not None:
                    edge[1].add(repeat)

    def concat(self, a, b):
        """
        C{a} then C{b}: an edge from each way C{a} ends to each way C{b} starts.
        """
        self.link(a.last, b.first)
        return _Piece(
            empty=min(a.empty * b.empty, _MANY),
            clean=a.clean and b.clean,
            first=_add(a.first, b.first, a.empty),
            last=_add(b.last, a.last, b.empty),
            final=b.final | a.final if b.clean else b.final,
        )

    def sequence(self, nodes, flags):
        """
        Parsed nodes in a row.
        """
        piece = _EMPTY
        for op, argument in nodes:
            piece = self.concat(piece, self.node(str(op), argument, flags))
        return piece

    def alternation(self, pieces):
        """
        One of C{pieces}: their ways add up.
        """
        return _Piece(
            empty=min(sum(p.empty for p in pieces), _MANY),
            clean=any(p.clean for p in pieces),
            first=_merge(p.first for p in pieces),
            last=_merge(p.last for p in pieces),
            final=frozenset().union(*(p.final for p in pieces)),
        )

    def optional(self, piece):
        """
        C{piece} or nothing.
        """
        return self.alternation([piece, _EMPTY])

    def node(self, op, argument, flags):
        """
        One parsed node, by its builder in L{_BUILDERS}.

        @raise ValueError: for an opcode the check does not know.
        """
        build = _BUILDERS.get(op)
        if build is None:
            raise ValueError("it uses {}, which the check does not know".format(op))
        return build(self, argument, flags)

    def literal(self, argument, flags):
        return self.position(_fold(1 << argument, flags))

    def notLiteral(self, argument, flags):
        return self.position(_ALL & ~_fold(1 << argument, flags))

    def any(self, argument, flags):
        return self.position(_ALL)

    def charClass(self, argument, flags):
        return self.position(_classMask(argument, flags))

    def assertion(self, argument, flags):
        return _ASSERTION

    def lookaround(self, argument, flags):
        """
        A lookahead or lookbehind: checked as a scope of its own, an
        assertion here.
        """
        self.checker.scope(argument[1], flags)
        return _ASSERTION

    def group(self, argument, flags):
        _, add, remove, nodes = argument
        return self.sequence(nodes, (flags | add) & ~remove)

    def branch(self, argument, flags):
        return self.alternation([self.sequence(nodes, flags) for nodes in argument[1]])

    def conditional(self, argument, flags):
        _, yes, no = argument
        return self.alternation(
            [self.sequence(yes, flags), self.sequence(no, flags) if no else _EMPTY]
        )

    def reference(self, argument, flags):
        # A back reference matches one text, which may be empty or fail.
        return self.alternation([self.position(_ALL), _ASSERTION])

    def atomic(self, argument, flags):
        return self.opaque(argument, flags)

    def possessive(self, argument, flags):
        self.checker.repeatOf(argument, "POSSESSIVE_REPEAT")
        return self.opaque([("MAX_REPEAT", argument)], flags, key=id(argument))

    def opaque(self, nodes, flags, key=None):
        """
        A part that gives nothing back once matched: checked as a scope of
        its own, and one state here.
        """
        mask, empty, clean = self.checker.scope(nodes, flags, key)
        token = self.position(mask)
        if empty:
            return self.alternation([token, _EMPTY if clean else _ASSERTION])
        return token

    def lazyRepeat(self, argument, flags):
        """
        A lazy repeat has the ways of a greedy one, tried in another order.
        """
        self.checker.repeatOf(argument, "MIN_REPEAT")
        return self.repeat(argument, flags)

    def repeat(self, argument, flags):
        """
        C{A{low,high}}: C{low} copies of C{A} in a row (one for C{A?}), the
        last looping back on itself when the count is open-ended.

        A count that can vary by more than one (C{a{1,5}}, C{.{0,16}}) is
        taken as open-ended: it splits a text in the ways the open-ended
        form does, up to its bound, and a bound of 16 is no protection
        (Python took 19 s on C{'^(?:.{0,16}){0,16}$'} and 32 characters).
        Past L{_MAX_COPIES} copies or L{_MAX_POSITIONS} states, two copies
        stand for the count.
        """
        low, high, nodes = argument
        repeat = self.checker.repeatOf(argument, "MAX_REPEAT")
        if high == 0:
            return _EMPTY
        openEnded = high >= self.checker.maxRepeat or high > max(low, 1)
        before = len(self.masks)
        built = [self.sequence(nodes, flags)]
        size = len(self.masks) - before
        if low > _MAX_COPIES or len(self.masks) + size * low > _MAX_POSITIONS:
            low = 2

        def copy():
            return built.pop() if built else self.sequence(nodes, flags)

        piece = _EMPTY
        for _ in range(low - 1):
            piece = self.concat(piece, copy())
        body = copy()
        if openEnded:
            self.link(body.last, body.first, repeat)
        return self.optional(body) if low == 0 else self.concat(piece, body)


def _merge(dicts):
    total = {}
    for d in dicts:
        total = _add(total, d)
    return total


# The builder of each node of Python's parse tree, by opcode name.
_BUILDERS = {
    "LITERAL": _Automaton.literal,
    "NOT_LITERAL": _Automaton.notLiteral,
    "ANY": _Automaton.any,
    "IN": _Automaton.charClass,
    "AT": _Automaton.assertion,
    "ASSERT": _Automaton.lookaround,
    "ASSERT_NOT": _Automaton.lookaround,
    "SUBPATTERN": _Automaton.group,
    "BRANCH": _Automaton.branch,
    "GROUPREF_EXISTS": _Automaton.conditional,
    "GROUPREF": _Automaton.reference,
    "ATOMIC_GROUP": _Automaton.atomic,
    "POSSESSIVE_REPEAT": _Automaton.possessive,
    "MAX_REPEAT": _Automaton.repeat,
    "MIN_REPEAT": _Automaton.lazyRepeat,
}


class _Checker:
    """
    The check of one expression: its scopes, its repeats, and the first
    repeat found that can backtrack catastrophically.

    @ivar repeats: C{id} of a repeat's parse-tree argument -> C{(order,
        opcode name, argument)}, in the order met (an outer repeat before those
        inside it).
    @ivar problem: the key in C{repeats} of the repeat found, or L{None}.
    """

    def __init__(self, maxRepeat):
        self.maxRepeat = maxRepeat
        self.repeats = {}
        self.problem = None
        self.states = 0
        self.work = 0
        self._scopes = {}

    def repeatOf(self, argument, op):
        """
        @return: the key of a repeat, registering it the first time.
        """
        key = id(argument)
        if key not in self.repeats:
            self.repeats[key] = (len(self.repeats), op, argument)
        return key

    def scope(self, nodes, flags, key=None):
        """
        Check a scope (once, however often it is copied).

        @return: C{(mask, empty, clean)}: the bytes the scope can take, the
            ways it matches the empty text and whether one is clean.
        """
        key = id(nodes) if key is None else key
        if key not in self._scopes:
            automaton = _Automaton(self)
            piece = automaton.sequence(nodes, flags)
            repeats = _ambiguousRepeats(automaton, piece.final)
            if repeats and self.problem is None:
                self.problem = min(repeats, key=lambda r: self.repeats[r][0])
            mask = 0
            for positionMask in automaton.masks:
                mask |= positionMask
            self._scopes[key] = (mask, piece.empty, piece.clean)
        return self._scopes[key]


def _pairs(automaton, state, allowed):
    """
    The successors of a state of the product automaton.

    @param state: C{(p, q)} with C{p <= q}: two paths at positions C{p} and
        C{q} after reading the same text.
    @param allowed: the positions the paths may go to.
    @return: C{((p2, q2), different, repeats)} for each pair of edges on
        which both paths read one more byte: C{different} when the two
        edges are different ways, C{repeats} the loops they close.
    """
    masks, follow = automaton.masks, automaton.follow
    p, q = state
    checker = automaton.checker
    checker.work += len(follow[p]) * len(follow[q])
    if checker.work > _MAX_WORK:
        raise ValueError("it is too complex to check")
    for p2, (waysP, repeatsP) in follow[p].items():
        if p2 not in allowed:
            continue
        for q2, (waysQ, repeatsQ) in follow[q].items():
            if q2 in allowed and masks[p2] & masks[q2]:
                different = p != q or p2 != q2 or waysP >= _MANY
                yield (min(p2, q2), max(p2, q2)), different, repeatsP | repeatsQ


def _components(automaton, allowed):
    """
    The strongly connected components of the product automaton over the
    C{allowed} positions, reachable from its diagonal (Tarjan's algorithm,
    without recursion).

    @return: a list of sets of states.
    """
    index, low, onStack, stack, found = {}, {}, set(), [], []
    for start in sorted(allowed):
        if (start, start) in index:
            continue
        work = [((start, start), None)]
        while work:
            state, successors = work.pop()
            if successors is None:
                index[state] = low[state] = len(index)
                stack.append(state)
                onStack.add(state)
                successors = iter([s for s, _, _ in _pairs(automaton, state, allowed)])
            for successor in successors:
                if successor not in index:
                    work.append((state, successors))
                    work.append((successor, None))
                    break
                if successor in onStack:
                    low[state] = min(low[state], index[successor])
            else:
                if low[state] == index[state]:
                    component = set()
                    while True:
                        member = stack.pop()
                        onStack.discard(member)
                        component.add(member)
                        if member == state:
                            break
                    found.append(component)
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[state])
    return found


def _ambiguousRepeats(automaton, final):
    """
    The repeats of a scope that can backtrack catastrophically.

    Only paths through positions that are not final count: a path that
    reaches a final position succeeds (the scope can end there, and the
    engine tries that before it gives up), so the work spent on a text that
    fails is all on paths that never reach one.

    @param final: the positions after which the scope can end with nothing
        that could fail.
    @return: the keys of the repeats whose loops close a cycle, through
        positions that are not final, that two different paths can take on
        the same text; empty when there are none.
    """
    allowed = frozenset(range(len(automaton.masks))) - final
    repeats = set()
    for component in _components(automaton, allowed):
        if not any(p == q for p, q in component):
            continue
        different = any(p != q for p, q in component)
        loops = set()
        for state in component:
            for successor, differentWays, closed in _pairs(automaton, state, allowed):
                if successor in component:
                    different = different or differentWays
                    loops |= closed
        if different:
            repeats |= loops
    return repeats


def backtrackingRepeat(pattern):
    """
    Find a repeat of a regular expression that can backtrack
    catastrophically (see the module docstring for the rule).

    @param pattern: the expression, as L{bytes} (as routes compile it);
        it must compile.
    @return: the text of the outermost such repeat, as Python's parser
        sees it (C{'(a+)+'}), or L{None} when the expression is safe.
    @raise ValueError: for an expression that cannot be checked (a
        construct the check does not know, or too large); the message says
        why.
    """
    flags, nodes, maxRepeat = _parse(pattern)
    checker = _Checker(maxRepeat)
    try:
        checker.scope(nodes, flags)
    except RecursionError:
        raise ValueError("its groups are nested too deeply") from None
    if checker.problem is None:
        return None
    _, op, argument = checker.repeats[checker.problem]
    return render([(op, argument)], maxRepeat)
