"""
A model of Python's backtracking regular expression engine that counts its
steps, so that tests can tell an expression that takes exponential time from
one that does not without timing anything.

It walks the same parse tree as L{proxyws.patterns} and tries the ways in
the order C{re} does: branches left to right, greedy repeats longest first
and lazy ones shortest first, an iteration that matched nothing ends its
repeat, atomic groups, possessive repeats and lookarounds keep their first
way.  Back references, conditionals and lookbehinds are not modelled.  Tests
check that it agrees with C{re} on whether each text matches.
"""

from proxyws import patterns


class OutOfSteps(Exception):
    """
    The model took more steps than it was allowed.
    """


_IGNORECASE, _DOTALL = 2, 16
_WORD = patterns._WORD


class Model:
    """
    A bytes expression, searched with a count of steps.

    @ivar steps: the steps of the last search: one for each node tried at
        each position.
    """

    def __init__(self, pattern, budget=3000000):
        self.flags, self.nodes, self._maxRepeat = patterns._parse(pattern)
        self.budget = budget
        self.steps = 0

    def search(self, text):
        """
        Search C{text} as C{re.search} does.

        @return: whether it matches; C{steps} holds the work done.
        @raise OutOfSteps: past the budget.
        """
        self.steps = 0
        self._text = text
        for start in range(len(text) + 1):
            for _ in self._sequence(self.nodes, 0, start, self.flags):
                return True
        return False

    def _sequence(self, nodes, index, position, flags):
        if index == len(nodes):
            yield position
            return
        op, argument = nodes[index]
        for end in self._node(str(op), argument, position, flags):
            yield from self._sequence(nodes, index + 1, end, flags)

    def _node(self, op, argument, position, flags):
        self.steps += 1
        if self.steps > self.budget:
            raise OutOfSteps(self.steps)
        if op in ("LITERAL", "NOT_LITERAL", "ANY", "IN"):
            if self._takes(op, argument, position, flags):
                yield position + 1
        elif op == "AT":
            if self._at(str(argument), position):
                yield position
        elif op == "SUBPATTERN":
            _, add, remove, nodes = argument
            yield from self._sequence(nodes, 0, position, (flags | add) & ~remove)
        elif op == "BRANCH":
            for nodes in argument[1]:
                yield from self._sequence(nodes, 0, position, flags)
        elif op in ("MAX_REPEAT", "MIN_REPEAT"):
            low, high, nodes = argument
            yield from self._repeat(nodes, low, high, op == "MIN_REPEAT", 0, position, flags)
        elif op == "POSSESSIVE_REPEAT":
            low, high, nodes = argument
            for end in self._repeat(nodes, low, high, False, 0, position, flags):
                yield end
                return
        elif op == "ATOMIC_GROUP":
            for end in self._sequence(argument, 0, position, flags):
                yield end
                return
        elif op in ("ASSERT", "ASSERT_NOT") and argument[0] == 1:
            found = any(True for _ in self._sequence(argument[1], 0, position, flags))
            if found == (op == "ASSERT"):
                yield position
        else:
            raise NotImplementedError(op)

    def _repeat(self, nodes, low, high, lazy, count, position, flags):
        if lazy and count >= low:
            yield position
        if count < high:
            for end in self._sequence(nodes, 0, position, flags):
                if end == position and count + 1 > low:
                    # An iteration that matched nothing ends the repeat.
                    if not lazy:
                        yield end
                    continue
                yield from self._repeat(nodes, low, high, lazy, count + 1, end, flags)
        if not lazy and count >= low:
            yield position

    def _takes(self, op, argument, position, flags):
        if position >= len(self._text):
            return False
        byte = self._text[position]
        if op == "ANY":
            return flags & _DOTALL or byte != 0x0A
        if op == "IN":
            mask = patterns._classMask(argument, flags)
        else:
            mask = patterns._fold(1 << argument, flags)
            if op == "NOT_LITERAL":
                mask = patterns._ALL & ~mask
        return bool(mask >> byte & 1)

    def _at(self, where, position):
        text = self._text
        if where in ("AT_BEGINNING", "AT_BEGINNING_STRING"):
            return position == 0
        if where == "AT_END":
            return position == len(text) or (position == len(text) - 1 and text[-1:] == b"\n")
        if where == "AT_END_STRING":
            return position == len(text)
        before = position > 0 and bool(_WORD >> text[position - 1] & 1)
        after = position < len(text) and bool(_WORD >> text[position] & 1)
        if where == "AT_BOUNDARY":
            return before != after
        if where == "AT_NON_BOUNDARY":
            return before == after
        raise NotImplementedError(where)


def steps(pattern, text, budget=3000000):
    """
    @return: C{(matched, steps)} of searching C{text} for C{pattern}.
    """
    model = Model(pattern, budget)
    matched = model.search(text)
    return matched, model.steps
