"""
The balancing policies of an upstream, and the hashing they share with
session affinity.  Pure: no I/O, no clock; the only state is each policy's
own (round robin's counters).

Each policy is an L{IBackendSelector}: given the candidate members (up and
not draining, in config order) and the request, it returns one of them.
A candidate is an L{IUpstreamMember}; the policies read its C{index},
C{weight}, C{connections} and C{seed}.

Rendezvous hashing
==================

L{rendezvous} gives each member a score for a key and picks the highest
(highest random weight hashing, with weights as in Schindelhauer and
Schomaker's "weighted distributed hash tables": score = -w / ln(u), u the
member's hash of the key mapped into (0, 1)).  A key lands on each member
with probability proportional to its weight; when a member leaves, only the
keys it had move, and they spread over the others by weight; and the
choice depends only on the key, the members' names and weights, so every
process with the same member list makes the same one.  The hashes are
BLAKE2b and a 64-bit mixer, never Python's C{hash()}, which differs from
one process to the next.
"""

import hashlib
import math
import random

from zope.interface import implementer

from .affinity import requestKey
from .interfaces import IBackendSelector

_MASK = (1 << 64) - 1


def hash64(data):
    """
    A 64-bit hash of C{data}, the same in every process.

    @param data: L{bytes}.
    @rtype: L{int}
    """
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def memberSeed(name):
    """
    The number a member mixes into every key it scores (its C{seed}).

    @param name: the member's name (L{str}).
    @rtype: L{int}
    """
    return hash64(b"proxyws member " + name.encode("utf-8"))


def _mix(value):
    """
    MurmurHash3's 64-bit finalizer: every bit of C{value} moves every bit
    of the result.
    """
    value ^= value >> 33
    value = (value * 0xFF51AFD7ED558CCD) & _MASK
    value ^= value >> 33
    value = (value * 0xC4CEB9FE1A85EC53) & _MASK
    return value ^ (value >> 33)


def rendezvous(keyHash, members):
    """
    The member a key belongs to: weighted highest random weight.

    @param keyHash: L{hash64} of the key.
    @param members: a non-empty sequence of L{IUpstreamMember}.
    @return: the member with the highest score; on an exact tie, the first.
    """
    best = None
    bestCost = math.inf
    log = math.log
    for member in members:
        # u in (0, 1): the top 53 bits and a half, so never 0 or 1.
        u = ((_mix(keyHash ^ member.seed) >> 11) + 0.5) / 9007199254740992.0
        # Highest -w / ln(u) is lowest -ln(u) / w.
        cost = -log(u) / member.weight
        if cost < bestCost:
            best, bestCost = member, cost
    return best


@implementer(IBackendSelector)
class SmoothRoundRobin:
    """
    nginx's smooth weighted round robin: each choice adds every candidate's
    weight to its counter, takes the candidate with the highest counter and
    takes the sum of the weights off it.  Over any run of sum-of-weights
    choices each member is chosen exactly its weight's times, interleaved
    (weights 5, 1, 1 give a a b a c a a).
    """

    def __init__(self, size):
        """
        @param size: the number of members (candidates' C{index} is below).
        """
        self._current = [0] * size

    def select(self, candidates, request):
        """
        See L{IBackendSelector.select}.
        """
        current = self._current
        best = None
        bestValue = total = 0
        for member in candidates:
            weight = member.weight
            value = current[member.index] + weight
            current[member.index] = value
            total += weight
            if best is None or value > bestValue:
                best, bestValue = member, value
        current[best.index] = bestValue - total
        return best


@implementer(IBackendSelector)
class LeastConnections:
    """
    The candidate with the fewest open connections (open websockets
    included) for its weight; candidates tied on that are taken in smooth
    weighted round robin, as nginx's C{least_conn} does.
    """

    def __init__(self, size):
        """
        @param size: the number of members.
        """
        self._tied = SmoothRoundRobin(size)

    def select(self, candidates, request):
        """
        See L{IBackendSelector.select}.
        """
        tied = []
        fewest = weight = 0
        for member in candidates:
            # a / w < b / v compared as a * v < b * w: no floats.
            load = member.connections * weight
            bar = fewest * member.weight
            if not tied or load < bar:
                tied = [member]
                fewest, weight = member.connections, member.weight
            elif load == bar:
                tied.append(member)
        if len(tied) == 1:
            return tied[0]
        return self._tied.select(tied, request)


@implementer(IBackendSelector)
class RandomTwo:
    """
    The power of two random choices: two different candidates drawn at
    random by weight, and of them the one with fewer open connections for
    its weight (the first drawn on a tie).
    """

    def __init__(self, rng):
        """
        @param rng: a L{random.Random}.
        """
        self._random = rng.random

    def select(self, candidates, request):
        """
        See L{IBackendSelector.select}.
        """
        if len(candidates) == 1:
            return candidates[0]
        first = self._draw(candidates, None)
        second = self._draw(candidates, first)
        if second.connections * first.weight < first.connections * second.weight:
            return second
        return first

    def _draw(self, candidates, skip):
        total = sum(member.weight for member in candidates if member is not skip)
        point = self._random() * total
        for member in candidates:
            if member is not skip:
                point -= member.weight
                if point < 0:
                    return member
        # Rounding left a little of the last weight over.
        return [member for member in candidates if member is not skip][-1]


@implementer(IBackendSelector)
class ConsistentHash:
    """
    Rendezvous hashing on a key of the request (L{requestKey}): one key,
    one member, in every process.  A request without the key (no such
    header or cookie) is balanced in smooth weighted round robin.
    """

    def __init__(self, hashKey, size):
        """
        @param hashKey: the upstream's L{proxyws.upstream.HashKey}.
        @param size: the number of members.
        """
        self._hashKey = hashKey
        self._fallback = SmoothRoundRobin(size)

    def select(self, candidates, request):
        """
        See L{IBackendSelector.select}.
        """
        key = requestKey(self._hashKey, request) if request is not None else None
        if key is None:
            return self._fallback.select(candidates, request)
        return rendezvous(hash64(key), candidates)


# The policies by their config name: each a factory taking the upstream's
# settings and a random.Random and returning a new IBackendSelector (a new
# one per upstream, and again when a reload changes the upstream).
POLICIES = {
    "round_robin": lambda settings, rng: SmoothRoundRobin(len(settings.members)),
    "least_conn": lambda settings, rng: LeastConnections(len(settings.members)),
    "random_two": lambda settings, rng: RandomTwo(rng),
    "hash": lambda settings, rng: ConsistentHash(settings.hashKey, len(settings.members)),
}


def selectorFor(settings, rng=None):
    """
    The selector of an upstream's policy.

    @param settings: a L{proxyws.upstream.UpstreamSettings}.
    @param rng: a L{random.Random}; a new one by default.
    @return: an L{IBackendSelector}.
    """
    if settings.policyPlugin is not None:
        # A plugin's policy: its factory makes the selector
        # (proxyws.plugins; checked when the config was loaded).
        from .plugins import selectorFor as pluginSelector

        return pluginSelector(settings.policyPlugin)
    return POLICIES[settings.policy](settings, rng or random.Random())
