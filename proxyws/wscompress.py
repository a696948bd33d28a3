"""
permessage-deflate (RFC 7692) across the two legs of a websocket relay.

The backend leg offers the backend exactly what the client offered; the
client leg then accepts the client's offer with the parameters the backend
chose.  When both legs end up with the same parameters, frames are relayed
as they are (L{proxyws.wsfast}): nothing is decompressed and compressed
again.  Otherwise each leg compresses with its own settings and the relay
passes decompressed data between them.
"""

from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
    PerMessageDeflateResponseAccept,
)

# The parameters that must be equal on both legs for payloads to be relayed
# compressed.
PARAMETERS = (
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
)


def parseOffers(values, parse):
    """
    The permessage-deflate offers of a client's C{Sec-WebSocket-Extensions}.

    @param values: the header's values (bytes), or L{None}.
    @param parse: Autobahn's extension header parser (a protocol's
        C{_parseExtensionsHeader}).
    @return: a L{list} of C{PerMessageDeflateOffer}; offers that do not
        parse are left out.
    """
    offers = []
    for value in values or ():
        for name, params in parse(value.decode("latin-1")):
            if name != "permessage-deflate":
                continue
            try:
                offers.append(PerMessageDeflateOffer.parse(params))
            except Exception:
                continue
    return offers


def acceptResponse(response):
    """
    The backend leg accepts whatever the backend chose among our offers.
    """
    return PerMessageDeflateResponseAccept(response)


def mirrorAccept(offers, chosen):
    """
    Accept one of the client's offers with the parameters the backend chose
    for the backend leg, so that both legs match.

    @param offers: the client's C{PerMessageDeflateOffer}s.
    @param chosen: the backend leg's C{PerMessageDeflate}, or L{None} when
        the backend declined compression.
    @return: a C{PerMessageDeflateOfferAccept}, or L{None} to decline.
    """
    if chosen is None:
        return None
    for offer in offers:
        try:
            return PerMessageDeflateOfferAccept(
                offer,
                request_no_context_takeover=chosen.client_no_context_takeover,
                request_max_window_bits=_bits(
                    chosen.client_max_window_bits, offer.accept_max_window_bits
                ),
                no_context_takeover=chosen.server_no_context_takeover or None,
                window_bits=_bits(chosen.server_max_window_bits, True) or None,
            )
        except Exception:
            continue
    return None


def _bits(bits, allowed):
    # 15 is the default: asking for it explicitly is the same as not asking.
    return bits if allowed and bits and bits != 15 else 0


def sameParameters(one, other):
    """
    Whether two legs' deflate settings let payloads pass unchanged.
    """
    if one is None or other is None:
        return False
    return all(getattr(one, p) == getattr(other, p) for p in PARAMETERS)
