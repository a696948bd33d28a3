"""
Tests for L{proxyws.wscompress}: which permessage-deflate offers a client's
header makes, and which backend answers fit them (RFC 7692 7.1).
"""

from twisted.trial.unittest import SynchronousTestCase

from proxyws.wscompress import BadExtension, acceptedAnswer, clientOffers, offerHeader

# A client's Sec-WebSocket-Extensions values -> the offers forwarded, as text.
OFFERS = [
    ([b"permessage-deflate"], [b"permessage-deflate"]),
    ([b"permessage-deflate; client_max_window_bits"], [b"permessage-deflate; client_max_window_bits"]),
    ([b"permessage-deflate; client_max_window_bits=9"], [b"permessage-deflate; client_max_window_bits=9"]),
    (
        [b'permessage-deflate; server_max_window_bits="10", permessage-deflate'],
        [b'permessage-deflate; server_max_window_bits="10"', b"permessage-deflate"],
    ),
    ([b"Permessage-Deflate; Server_No_Context_Takeover"], [b"Permessage-Deflate; Server_No_Context_Takeover"]),
    ([b"x-webkit-deflate-frame", b"permessage-deflate"], [b"permessage-deflate"]),
    # Declined, not fatal: unknown or repeated parameters, bad values.
    ([b"permessage-deflate; foo"], []),
    ([b"permessage-deflate; client_max_window_bits=7"], []),
    ([b"permessage-deflate; client_max_window_bits=16"], []),
    ([b"permessage-deflate; client_max_window_bits=09"], []),
    ([b"permessage-deflate; server_max_window_bits"], []),
    ([b"permessage-deflate; server_no_context_takeover=1"], []),
    ([b"permessage-deflate; server_no_context_takeover; server_no_context_takeover"], []),
    ([b"permessage-deflate; =x"], []),
    (None, []),
]

# (offers made, the backend's answer) -> the answer the client gets, or
# BadExtension.
ANSWERS = [
    ([b"permessage-deflate"], None, None),
    ([b"permessage-deflate"], [b"permessage-deflate"], b"permessage-deflate"),
    (
        [b"permessage-deflate"],
        [b"permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
        b"permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    ),
    ([b"permessage-deflate"], [b"permessage-deflate; server_max_window_bits=12"],
     b"permessage-deflate; server_max_window_bits=12"),
    ([b"permessage-deflate; client_max_window_bits"], [b"permessage-deflate; client_max_window_bits=10"],
     b"permessage-deflate; client_max_window_bits=10"),
    ([b"permessage-deflate; client_max_window_bits=9"], [b"permessage-deflate; client_max_window_bits=9"],
     b"permessage-deflate; client_max_window_bits=9"),
    ([b"permessage-deflate; server_max_window_bits=10"], [b"permessage-deflate; server_max_window_bits=9"],
     b"permessage-deflate; server_max_window_bits=9"),
    # The second offer fits.
    (
        [b"permessage-deflate; server_max_window_bits=8", b"permessage-deflate"],
        [b"permessage-deflate; server_max_window_bits=12"],
        b"permessage-deflate; server_max_window_bits=12",
    ),
    # Answers no offer allows.
    ([b"permessage-deflate"], [b"permessage-deflate; client_max_window_bits=10"], BadExtension),
    ([b"permessage-deflate; client_max_window_bits"], [b"permessage-deflate; client_max_window_bits"], BadExtension),
    ([b"permessage-deflate; client_max_window_bits=9"], [b"permessage-deflate; client_max_window_bits=10"], BadExtension),
    ([b"permessage-deflate; server_max_window_bits=10"], [b"permessage-deflate"], BadExtension),
    ([b"permessage-deflate; server_max_window_bits=10"], [b"permessage-deflate; server_max_window_bits=11"], BadExtension),
    ([b"permessage-deflate"], [b"x-webkit-deflate-frame"], BadExtension),
    ([b"permessage-deflate"], [b"permessage-deflate, permessage-deflate"], BadExtension),
    ([b"permessage-deflate"], [b"permessage-deflate", b"permessage-deflate"], BadExtension),
    ([b"permessage-deflate"], [b"permessage-deflate; foo"], BadExtension),
]


class OfferTests(SynchronousTestCase):
    """
    L{clientOffers} keeps the valid permessage-deflate offers as written.
    """

    def test_offers(self):
        """
        Each row of L{OFFERS}.
        """
        seen = [(values, [offer.text for offer in clientOffers(values)]) for values, _ in OFFERS]
        self.assertEqual(seen, [(values, expected) for values, expected in OFFERS])

    def test_offerHeader(self):
        """
        The offers go to the backend joined in one header, or not at all.
        """
        offers = clientOffers([b"permessage-deflate; client_max_window_bits, permessage-deflate"])
        self.assertEqual(
            offerHeader(offers), b"permessage-deflate; client_max_window_bits, permessage-deflate"
        )
        self.assertIsNone(offerHeader([]))


class AnswerTests(SynchronousTestCase):
    """
    L{acceptedAnswer} passes an answer that fits an offer, unchanged.
    """

    def test_answers(self):
        """
        Each row of L{ANSWERS}.
        """
        for offered, answer, expected in ANSWERS:
            offers = clientOffers(offered)
            if expected is BadExtension:
                self.assertRaises(BadExtension, acceptedAnswer, answer, offers)
            else:
                accepted = acceptedAnswer(answer, offers)
                text = accepted if accepted is None else accepted.text
                self.assertEqual(text, expected, (offered, answer))
