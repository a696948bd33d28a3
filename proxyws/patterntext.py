"""
Parsed regular expressions written back as text, to name a construct in a
message: the nodes of Python's parse tree (see L{proxyws.patterns._parse}),
as its parser left them -- C{(a|a)} comes back as C{(a(?:|))}.
"""

_AT = {
    "AT_BEGINNING": "^",
    "AT_BEGINNING_STRING": "\\A",
    "AT_END": "$",
    "AT_END_STRING": "\\Z",
    "AT_BOUNDARY": "\\b",
    "AT_NON_BOUNDARY": "\\B",
}
_ESCAPES = {
    "CATEGORY_DIGIT": "\\d",
    "CATEGORY_NOT_DIGIT": "\\D",
    "CATEGORY_SPACE": "\\s",
    "CATEGORY_NOT_SPACE": "\\S",
    "CATEGORY_WORD": "\\w",
    "CATEGORY_NOT_WORD": "\\W",
}
_SPECIAL = frozenset(".^$*+?{}[]\\|()")
_CLASS_SPECIAL = frozenset("]\\^-")
# Nodes that a quantifier applies to without a group around them.
_ATOMS = frozenset(["LITERAL", "NOT_LITERAL", "ANY", "IN", "SUBPATTERN", "ATOMIC_GROUP"])


def _character(code, special=_SPECIAL):
    text = chr(code)
    if not 0x20 < code < 0x7F:
        return "\\x{:02x}".format(code)
    return "\\" + text if text in special else text


def _quantifier(op, low, high, maxRepeat):
    open_ = high >= maxRepeat
    text = {(0, True): "*", (1, True): "+"}.get((low, open_))
    if text is None:
        if open_:
            text = "{%d,}" % (low,)
        elif (low, high) == (0, 1):
            text = "?"
        else:
            text = "{%d}" % (low,) if low == high else "{%d,%d}" % (low, high)
    return text + {"MIN_REPEAT": "?", "POSSESSIVE_REPEAT": "+"}.get(op, "")


def _classText(items):
    if len(items) == 1 and str(items[0][0]) == "CATEGORY":
        return _ESCAPES.get(str(items[0][1]), "\\?")
    parts = []
    for op, argument in items:
        op = str(op)
        if op == "NEGATE":
            parts.append("^")
        elif op == "LITERAL":
            parts.append(_character(argument, _CLASS_SPECIAL))
        elif op == "RANGE":
            parts.append("-".join(_character(c, _CLASS_SPECIAL) for c in argument))
        else:
            parts.append(_ESCAPES.get(str(argument), "\\?"))
    return "[" + "".join(parts) + "]"


def render(nodes, maxRepeat):
    """
    Write parsed nodes back as an expression (as Python's parser left
    them: C{(a|a)} comes back as C{(a(?:|))}).

    @param nodes: C{(opcode, argument)} nodes of Python's parse tree.
    @param maxRepeat: the number that stands for an open-ended count.
    @return: the expression, as L{str}.
    """
    return "".join(_renderNode(str(op), argument, maxRepeat) for op, argument in nodes)


def _renderNode(op, argument, maxRepeat):
    if op == "LITERAL":
        return _character(argument)
    if op == "NOT_LITERAL":
        return "[^" + _character(argument, _CLASS_SPECIAL) + "]"
    if op == "ANY":
        return "."
    if op == "IN":
        return _classText(argument)
    if op == "AT":
        return _AT.get(str(argument), "")
    if op == "SUBPATTERN":
        group, add, remove, nodes = argument
        if len(nodes) == 1 and str(nodes[0][0]) == "BRANCH":
            inner = "|".join(render(branch, maxRepeat) for branch in nodes[0][1][1])
        else:
            inner = render(nodes, maxRepeat)
        return ("(" if group else "(?:") + inner + ")"
    if op == "BRANCH":
        return "(?:" + "|".join(render(nodes, maxRepeat) for nodes in argument[1]) + ")"
    if op == "ATOMIC_GROUP":
        return "(?>" + render(argument, maxRepeat) + ")"
    if op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        low, high, nodes = argument
        if len(nodes) == 1 and str(nodes[0][0]) == "BRANCH":
            body = _renderNode("BRANCH", nodes[0][1], maxRepeat)
        elif len(nodes) == 1 and str(nodes[0][0]) in _ATOMS:
            body = render(nodes, maxRepeat)
        else:
            body = "(?:" + render(nodes, maxRepeat) + ")"
        return body + _quantifier(op, low, high, maxRepeat)
    if op in ("ASSERT", "ASSERT_NOT"):
        direction, nodes = argument
        kind = ("=" if op == "ASSERT" else "!") if direction == 1 else (
            "<=" if op == "ASSERT" else "<!")
        return "(?" + kind + render(nodes, maxRepeat) + ")"
    if op == "GROUPREF":
        return "\\%d" % (argument,)
    return "(?" + "...)"
