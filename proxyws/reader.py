"""
Reading a configuration file's tables against the schema, collecting every
problem rather than stopping at the first.

A L{Reader} records each problem as a L{ConfigError} and goes on with the
rest of the file: a table with a problem is skipped (L{Broken}) for what
depends on it, and the other tables are still checked.  L{shown} is how
every message echoes a value: never more than about a hundred characters of
it, however large it is.
"""

import difflib
import re

from .errors import Broken, ConfigError

# At most this many characters of a value's repr are shown in a message.
SHOWN = 100

# A message (from whatever module made it) is cut to this many characters,
# so that no value, however large, is echoed whole.
_LONGEST_MESSAGE = 600

# A TOML key that needs no quotes; others are shown quoted in key paths.
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

# A quoted repr of a long text inside a message made elsewhere.
_LONG_QUOTED = re.compile(
    r"""'(?:[^'\\]|\\.){%d,}'|"(?:[^"\\]|\\.){%d,}\"""" % (SHOWN, SHOWN)
)


def shown(value):
    """
    The repr of a value, for a message: whole when it is short, else its
    first hundred characters or so, an ellipsis and the length, as
    C{'aaaa…' (10485760 characters)}.

    @param value: any value read from a TOML file.
    @rtype: L{str}
    """
    if isinstance(value, (str, bytes)):
        return _shownText(value)
    try:
        text = repr(value)
    except RecursionError:
        return "<a {} nested too deeply to show>".format(type(value).__name__)
    except ValueError:
        # An integer of more digits than Python converts to text.
        return "<an {} too large to show>".format(type(value).__name__)
    if len(text) <= SHOWN + 20:
        return text
    return text[:SHOWN] + "… ({} characters)".format(len(text))


def _shownText(value):
    if len(value) <= SHOWN:
        text = repr(value)
        if len(text) <= SHOWN + 20:
            return text
    quotes = len(repr(value[:0]))
    keep = SHOWN
    head = repr(value[:keep])
    while len(head) - quotes > SHOWN and keep > 8:
        # Escapes (\x00, \U0001f600) make the repr longer than the text.
        keep = max(8, keep * SHOWN // (len(head) - quotes))
        head = repr(value[:keep])
    return "{}…{} ({} characters)".format(head[:-1], head[-1], len(value))


def keyName(key):
    """
    A TOML key as it appears in a key path: bare, or quoted and shortened.
    """
    return key if len(key) <= SHOWN and _BARE_KEY.fullmatch(key) else shown(key)


def oneLine(error):
    """
    A L{ConfigError} whose message is one line of bounded length: the long
    texts quoted in it shortened as L{shown} does, characters that are not
    printable (line breaks among them) escaped.

    @return: C{error} itself when it is already so.
    """
    message = error.message
    if len(message) > _LONGEST_MESSAGE:
        message = _LONG_QUOTED.sub(_shortenQuoted, message)
        if len(message) > _LONGEST_MESSAGE:
            message = message[:_LONGEST_MESSAGE] + "… ({} characters)".format(len(message))
    message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    if message == error.message:
        return error
    return ConfigError(error.filename, error.keyPath, message)


def _shortenQuoted(match):
    text = match.group(0)
    quote = text[0]
    return "{}{}…{} ({} characters in the repr)".format(
        quote, text[1 : SHOWN + 1], quote, len(text) - 2
    )


class Reader:
    """
    Validation of one file, remembering its name for the messages and
    collecting its problems.

    @ivar filename: the file's name.
    @ivar problems: the L{ConfigError}s found, in the order found.
    """

    def __init__(self, filename):
        self.filename = filename
        self.problems = []

    def error(self, keyPath, message):
        """
        @return: a L{ConfigError} of this file.
        """
        return ConfigError(self.filename, keyPath, message)

    def record(self, keyPath, message):
        """
        Record a problem and go on.
        """
        self.problems.append(oneLine(self.error(keyPath, message)))

    def attempt(self, check, *args, **kwargs):
        """
        Run one check that stands on its own (a table): a L{ConfigError} it
        raises is recorded.

        @return: C{(True, what check returned)}, or C{(False, None)} when it
            found a problem.
        """
        try:
            return True, check(*args, **kwargs)
        except ConfigError as e:
            self.problems.append(oneLine(e))
        except Broken:
            pass
        return False, None

    def table(self, value, keyPath):
        """
        @raise ConfigError: when C{value} is not a table.
        """
        if not isinstance(value, dict):
            raise self.error(keyPath, "{} is not a table".format(shown(value)))
        return value

    def tables(self, value, keyPath):
        """
        @return: the list of C{[[keyPath]]} tables.
        @raise ConfigError: when C{value} is not one or a list of them.
        """
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(keyPath, "must be written as [[{}]] tables".format(keyPath))
        return value

    def unknown(self, table, known, keyPath):
        """
        Record every key of C{table} not in C{known}, with a suggestion
        when one is close.

        @return: the known keys the unknown ones were taken for.
        """
        suggested = set()
        for key in table:
            if key in known:
                continue
            name = keyName(key)
            where = "{}.{}".format(keyPath, name) if keyPath else name
            close = difflib.get_close_matches(key, known, n=1) if len(key) < 100 else []
            hint = " (did you mean {!r}?)".format(close[0]) if close else ""
            suggested.update(close)
            self.record(
                where,
                "unknown key{}; known keys here are {}".format(hint, ", ".join(sorted(known))),
            )
        return suggested

    def settings(self, table, schema, keyPath, defaults=None, required=()):
        """
        Check C{table} against C{schema} and return the converted values by
        key, with defaults filled in.

        Every unknown key, bad value and missing required key is recorded
        (a required key that an unknown key was probably meant to be is
        not recorded again).

        @raise Broken: when there was any.
        """
        before = len(self.problems)
        suggested = self.unknown(table, schema, keyPath)
        values = {}
        for key, value in table.items():
            parse = schema.get(key, (None,))[0]
            if key not in schema or parse is None:
                values[key] = value
                continue
            try:
                values[key] = parse(value)
            except ValueError as e:
                self.record(
                    "{}.{}".format(keyPath, key), "{} is not {}".format(shown(value), e.args[0])
                )
        for key, (_, default) in schema.items():
            if key not in table:
                values[key] = (defaults or {}).get(key, default)
        for key in required:
            if key not in table and values[key] is None and key not in suggested:
                self.record("{}.{}".format(keyPath, key), "is required and missing")
        if len(self.problems) > before:
            raise Broken()
        return {key: values[key] for key in schema}


def fileOrder(problems, document):
    """
    Sort problems into the order of the file: by the first appearance of
    their top-level key, then by table number; problems of the file as a
    whole come first.

    @param document: the parsed TOML (its keys are in file order), or
        L{None}.
    @return: a new list; problems with the same text are listed once.
    """
    order = {key: n for n, key in enumerate(document or ())}
    seen = set()
    unique = []
    for problem in problems:
        if str(problem) not in seen:
            seen.add(str(problem))
            unique.append(problem)

    def position(problem):
        if not problem.keyPath:
            return (-1, 0)
        top = _TOP.match(problem.keyPath)
        name, number = top.group(1), top.group(2)
        return (order.get(name, len(order)), int(number) if number else -1)

    return sorted(unique, key=position)


_TOP = re.compile(r"([^.\[]*)(?:\[(\d+)\])?")
