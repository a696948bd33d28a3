"""
permessage-deflate (RFC 7692) across the two legs of a websocket.

The proxy negotiates the extension so that compressed frames pass through it
as they are: the backend is offered exactly the client's valid
permessage-deflate offers (their text unchanged), and the client is answered
with exactly the backend's choice.  Both ends then hold the same parameters,
as if they spoke directly, and the relay never inflates or deflates.  When a
route turns compression off, neither leg negotiates it.

Nothing here does I/O; L{proxyws.wsproxy} calls these functions with header
values and turns L{BadExtension} into a 502.
"""

import re

from .errors import BadExtension

# The extension this module negotiates.
NAME = b"permessage-deflate"

# RFC 7692 7.1: the parameters of permessage-deflate; True where a value is
# allowed in an offer, and whether one is required.  Window bits are 8 to
# 15, written without leading zeroes.
_PARAMETERS = {
    b"server_no_context_takeover": "none",
    b"client_no_context_takeover": "none",
    b"server_max_window_bits": "required",
    b"client_max_window_bits": "optional",
}
_BITS = re.compile(rb"8|9|1[0-5]")

# RFC 7230 token and quoted-string, as RFC 6455 9.1 writes extension
# parameters.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAMETER = re.compile(
    rb"[ \t]*(" + _TOKEN + rb")[ \t]*(?:=[ \t]*(" + _TOKEN + rb'|"(?:[^"\\]|\\.)*")[ \t]*)?'
)


class Offer:
    """
    One permessage-deflate offer (or answer).

    @ivar text: the offer as written, to forward unchanged.
    @ivar parameters: name -> value (L{None} for a parameter without one).
    """

    __slots__ = ("text", "parameters")

    def __init__(self, text, parameters):
        self.text = text
        self.parameters = parameters

    def bits(self, name):
        """
        @return: the window bits given for C{name}, 15 when it is given
            without a value, L{None} when it is absent.
        """
        if name not in self.parameters:
            return None
        value = self.parameters[name]
        return 15 if value is None else int(value)


def _split(value, separator):
    """
    Split C{value} at C{separator} outside quoted strings.
    """
    parts, current, quoted, escaped = [], bytearray(), False, False
    for byte in value:
        if escaped:
            escaped = False
        elif quoted and byte == 0x5C:
            escaped = True
        elif byte == 0x22:
            quoted = not quoted
        elif byte == separator and not quoted:
            parts.append(bytes(current))
            current = bytearray()
            continue
        current.append(byte)
    parts.append(bytes(current))
    return parts


def _unquote(value):
    if value is not None and value[:1] == b'"':
        return re.sub(rb"\\(.)", rb"\1", value[1:-1])
    return value


def parseElement(text):
    """
    Parse one permessage-deflate element of an extension header.

    @param text: one comma-separated element, such as
        C{b"permessage-deflate; client_max_window_bits"}.
    @return: an L{Offer}, or L{None} when the element is another extension
        or is not valid permessage-deflate (RFC 7692 5: such an offer is
        declined, not an error).
    """
    pieces = _split(text, 0x3B)
    if pieces[0].strip(b" \t").lower() != NAME:
        return None
    parameters = {}
    for piece in pieces[1:]:
        match = _PARAMETER.fullmatch(piece)
        if match is None:
            return None
        name, value = match.group(1).lower(), _unquote(match.group(2))
        rule = _PARAMETERS.get(name)
        if rule is None or name in parameters:
            return None
        if (rule == "none" and value is not None) or (rule == "required" and value is None):
            return None
        if value is not None and not _BITS.fullmatch(value):
            return None
        parameters[name] = value
    return Offer(text.strip(b" \t"), parameters)


def clientOffers(values):
    """
    The valid permessage-deflate offers of a client's
    C{Sec-WebSocket-Extensions} headers, in its order of preference.

    @param values: the header's values, or L{None}.
    @return: a L{list} of L{Offer}.
    """
    offers = []
    for value in values or ():
        for element in _split(value, 0x2C):
            offer = parseElement(element)
            if offer is not None:
                offers.append(offer)
    return offers


def offerHeader(offers):
    """
    @return: the C{Sec-WebSocket-Extensions} value that makes C{offers} to
        the backend, or L{None} when there are none.
    """
    if not offers:
        return None
    return b", ".join(offer.text for offer in offers)


def _accepts(offer, answer):
    """
    Whether C{answer} is a valid acceptance of C{offer} (RFC 7692 7.1).
    """
    offered = offer.bits(b"server_max_window_bits")
    answered = answer.bits(b"server_max_window_bits")
    if offered is not None and (answered is None or answered > offered):
        return False
    if b"client_max_window_bits" in answer.parameters:
        limit = offer.bits(b"client_max_window_bits")
        if limit is None or answer.parameters[b"client_max_window_bits"] is None:
            return False
        if answer.bits(b"client_max_window_bits") > limit:
            return False
    return True


def acceptedAnswer(values, offers):
    """
    Check the backend's C{Sec-WebSocket-Extensions} answer against the
    offers it was made.

    @param values: the answer's header values, or L{None}.
    @param offers: the L{Offer}s made to the backend.
    @return: the backend's answer as an L{Offer} (its C{text} goes to the
        client unchanged, its C{parameters} are the agreed ones), or
        L{None} when the backend declined compression.
    @raise BadExtension: when the backend named another extension, named
        permessage-deflate twice, or answered with parameters none of the
        offers allows.
    """
    if not values:
        return None
    elements = [e for value in values for e in _split(value, 0x2C) if e.strip(b" \t")]
    if len(elements) != 1:
        raise BadExtension("the backend accepted {} websocket extensions".format(len(elements)))
    answer = parseElement(elements[0])
    if answer is None:
        raise BadExtension(
            "the backend accepted an extension it was not offered: {!r}".format(elements[0][:80])
        )
    if not any(_accepts(offer, answer) for offer in offers):
        raise BadExtension(
            "the backend's permessage-deflate answer {!r} fits none of the offers".format(
                answer.text[:80]
            )
        )
    return answer
