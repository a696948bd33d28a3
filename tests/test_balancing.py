"""
Tests for L{proxyws.balancing}: the policies and rendezvous hashing, on
plain member values (no upstream, no clock).
"""

import random
from collections import Counter

import attr
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from proxyws.affinity import selectionRequest
from proxyws.balancing import (
    POLICIES,
    ConsistentHash,
    LeastConnections,
    RandomTwo,
    SmoothRoundRobin,
    hash64,
    memberSeed,
    rendezvous,
    selectorFor,
)
from proxyws.interfaces import IBackendSelector
from proxyws.schema import POLICIES as POLICY_NAMES
from proxyws.values import HashKey, UpstreamSettings


@attr.s(eq=False)
class Member:
    """
    What a policy reads of a member.
    """

    name = attr.ib()
    index = attr.ib()
    weight = attr.ib(default=1)
    connections = attr.ib(default=0)
    seed = attr.ib(default=None)

    def __attrs_post_init__(self):
        self.seed = memberSeed(self.name)


def members(*weights):
    """
    Members named a, b, c, ... with C{weights}.
    """
    return tuple(Member("abcdefghij"[n], n, weight) for n, weight in enumerate(weights))


def spread(select, candidates, count=10000):
    """
    @return: how many of C{count} choices each member got, by name.
    """
    return Counter(select(candidates).name for _ in range(count))


class SpreadMixin:
    """
    An assertion on how choices spread over weighted members.
    """

    def assertSpread(self, counts, candidates, tolerance=0.05):
        """
        Each member got its weight's share of the choices, within
        C{tolerance} of that share.
        """
        total = sum(counts.values())
        weights = sum(member.weight for member in candidates)
        for member in candidates:
            expected = total * member.weight / weights
            self.assertLessEqual(
                abs(counts[member.name] - expected),
                tolerance * expected,
                "{}: {} choices, {:.0f} expected".format(member.name, counts[member.name], expected),
            )


class InterfaceTests(SynchronousTestCase):
    """
    Every policy provides L{IBackendSelector}.
    """

    def test_policiesProvideSelector(self):
        """
        Each policy of the table, built for an upstream, passes
        C{verifyObject}.
        """
        for name in POLICIES:
            settings = UpstreamSettings(index=0, name="u", members=(1, 2), policy=name)
            self.assertTrue(verifyObject(IBackendSelector, selectorFor(settings)), name)

    def test_tableNamesTheConfigPolicies(self):
        """
        The config accepts exactly the policies the table has.
        """
        self.assertEqual(sorted(POLICIES), sorted(POLICY_NAMES))


class SmoothRoundRobinTests(SynchronousTestCase, SpreadMixin):
    """
    nginx's smooth weighted round robin.
    """

    def test_nginxSequence(self):
        """
        Weights 5, 1, 1 give nginx's documented interleaving, a a b a c a a,
        again and again.
        """
        candidates = members(5, 1, 1)
        policy = SmoothRoundRobin(3)
        names = "".join(policy.select(candidates, None).name for _ in range(14))
        self.assertEqual(names, "aabacaa" * 2)

    def test_exactWeights(self):
        """
        Over 10,000 choices each member gets its exact share (to within one
        choice where the total does not divide).
        """
        candidates = members(3, 2, 1, 4)
        policy = SmoothRoundRobin(4)
        counts = spread(lambda c: policy.select(c, None), candidates)
        self.assertEqual(dict(counts), {"a": 3000, "b": 2000, "c": 1000, "d": 4000})
        counts = spread(lambda c: policy.select(c, None), candidates, 10003)
        self.assertEqual(dict(counts), {"a": 3001, "b": 2001, "c": 1000, "d": 4001})

    def test_equalWeightsRotate(self):
        """
        Equal weights take turns in config order.
        """
        candidates = members(1, 1, 1)
        policy = SmoothRoundRobin(3)
        names = "".join(policy.select(candidates, None).name for _ in range(6))
        self.assertEqual(names, "abcabc")

    def test_candidatesChange(self):
        """
        A member left out of the candidates (down) is skipped; the others
        keep their shares.
        """
        a, b, c = members(2, 1, 1)
        policy = SmoothRoundRobin(3)
        counts = spread(lambda cs: policy.select(cs, None), (a, c), 3000)
        self.assertEqual(dict(counts), {"a": 2000, "c": 1000})


class LeastConnectionsTests(SynchronousTestCase):
    """
    Weighted least connections, ties in round robin.
    """

    def test_fewestConnections(self):
        """
        The member with the fewest open connections is chosen.
        """
        candidates = members(1, 1, 1)
        candidates[0].connections = 3
        candidates[1].connections = 1
        candidates[2].connections = 2
        self.assertEqual(LeastConnections(3).select(candidates, None).name, "b")

    def test_weighted(self):
        """
        Connections count per unit of weight: 3 connections on weight 4 are
        fewer than 1 on weight 1.
        """
        candidates = members(4, 1)
        candidates[0].connections = 3
        candidates[1].connections = 1
        self.assertEqual(LeastConnections(2).select(candidates, None).name, "a")
        candidates[0].connections = 5
        self.assertEqual(LeastConnections(2).select(candidates, None).name, "b")

    def test_tiesRoundRobin(self):
        """
        Members tied on connections take turns, by weight.
        """
        candidates = members(2, 1, 1)
        candidates[2].connections = 9
        policy = LeastConnections(3)
        names = "".join(policy.select(candidates, None).name for _ in range(6))
        self.assertEqual(sorted(names), sorted("aaaabb"))
        self.assertNotIn("c", names)

    def test_longLivedConnectionsSteer(self):
        """
        Choices that stay open (websockets) fill the members up evenly: each
        new one goes to the least loaded, so after 30 open ones on weights
        1, 1, 1 each member holds 10, and with weights 2, 1 the first holds
        twice as many.
        """
        for weights, expected in [((1, 1, 1), [10, 10, 10]), ((2, 1), [20, 10])]:
            candidates = members(*weights)
            policy = LeastConnections(len(candidates))
            for _ in range(30):
                policy.select(candidates, None).connections += 1
            self.assertEqual([m.connections for m in candidates], expected)

    def test_closingFreesMember(self):
        """
        A member whose long-lived connections close is chosen next.
        """
        candidates = members(1, 1, 1)
        policy = LeastConnections(3)
        for _ in range(9):
            policy.select(candidates, None).connections += 1
        candidates[1].connections -= 2
        self.assertEqual(policy.select(candidates, None).name, "b")


class RandomTwoTests(SynchronousTestCase, SpreadMixin):
    """
    The power of two random choices, by weight.
    """

    def test_spreadByWeight(self):
        """
        With no connections open, 10,000 choices spread by weight within 5%.
        """
        candidates = members(3, 2, 1)
        policy = RandomTwo(random.Random(7))
        self.assertSpread(spread(lambda c: policy.select(c, None), candidates), candidates)

    def test_lessLoadedOfTwo(self):
        """
        Of two members, the one with fewer connections per weight is always
        chosen.
        """
        candidates = members(1, 1)
        candidates[0].connections = 5
        policy = RandomTwo(random.Random(1))
        self.assertEqual(set(policy.select(candidates, None).name for _ in range(50)), {"b"})

    def test_neverTheMostLoaded(self):
        """
        With three members the most loaded one is never chosen (it loses
        against whichever other is drawn with it).
        """
        candidates = members(1, 1, 1)
        candidates[2].connections = 4
        policy = RandomTwo(random.Random(3))
        self.assertNotIn("c", set(policy.select(candidates, None).name for _ in range(200)))

    def test_oneCandidate(self):
        """
        A single candidate is chosen without drawing.
        """
        candidates = members(1)
        self.assertIs(RandomTwo(random.Random()).select(candidates, None), candidates[0])


class RendezvousTests(SynchronousTestCase, SpreadMixin):
    """
    Weighted rendezvous hashing.
    """

    def test_pinnedValues(self):
        """
        The hashes are fixed functions of their input, the same in every
        process and every run: an upgrade that changed them would move every
        session, and this table would fail first.
        """
        self.assertEqual(hash64(b"proxyws"), 0xAC856C583FB7B608)
        self.assertEqual(memberSeed("a"), 0xABAEC565DE946F1C)
        for weights, expected in PINNED_CHOICES:
            candidates = members(*weights)
            chosen = "".join(
                rendezvous(hash64(b"key %d" % n), candidates).name for n in range(16)
            )
            self.assertEqual(chosen, expected, weights)

    def test_sameKeySameMember(self):
        """
        A key always lands on the same member, whatever the order of the
        candidates.
        """
        candidates = members(1, 2, 3)
        for n in range(100):
            key = hash64(b"session %d" % n)
            self.assertIs(rendezvous(key, candidates), rendezvous(key, candidates[::-1]))

    def test_spreadByWeight(self):
        """
        10,000 keys spread over the members by weight, within 5%.
        """
        candidates = members(3, 2, 1)
        counts = Counter(rendezvous(hash64(b"key %d" % n), candidates).name for n in range(10000))
        self.assertSpread(counts, candidates)

    def test_removalMovesOnlyItsKeys(self):
        """
        When a member leaves, only the keys it had move, spread over the
        others; the fraction moved is its share (1/N for equal weights).
        """
        candidates = members(1, 1, 1, 1, 1)
        keys = [hash64(b"key %d" % n) for n in range(10000)]
        before = [rendezvous(key, candidates) for key in keys]
        gone = candidates[2]
        after = [rendezvous(key, candidates[:2] + candidates[3:]) for key in keys]
        moved = [n for n in range(len(keys)) if before[n] is not after[n]]
        self.assertTrue(all(before[n] is gone for n in moved))
        self.assertEqual(len(moved), sum(1 for member in before if member is gone))
        self.assertLess(abs(len(moved) / len(keys) - 1 / 5), 0.01)

    def test_additionTakesOnlyItsShare(self):
        """
        A member that joins takes its weight's share of the keys, from
        every other member, and no key moves between the others.
        """
        candidates = members(1, 1, 1, 2)
        keys = [hash64(b"key %d" % n) for n in range(10000)]
        before = [rendezvous(key, candidates[:3]) for key in keys]
        after = [rendezvous(key, candidates) for key in keys]
        moved = [n for n in range(len(keys)) if before[n] is not after[n]]
        self.assertTrue(all(after[n] is candidates[3] for n in moved))
        self.assertLess(abs(len(moved) / len(keys) - 2 / 5), 0.02)


# Rendezvous over members a, b, c, d of these weights, for the keys
# "key 0" to "key 15" (test_pinnedValues).
PINNED_CHOICES = [
    ((1, 1, 1, 1), "dccbadaaaabbbdcb"),
    ((1, 2, 3, 4), "dcccddaaadbdddcb"),
]


class ConsistentHashTests(SynchronousTestCase, SpreadMixin):
    """
    The C{hash} policy.
    """

    def test_clientAddress(self):
        """
        By default the client address is hashed: one address, one member;
        10,000 addresses spread by weight within 5%.
        """
        candidates = members(1, 3)
        policy = ConsistentHash(HashKey(), 2)
        view = lambda address: selectionRequest(address, [], b"/")
        first = policy.select(candidates, view("10.1.2.3"))
        self.assertTrue(all(policy.select(candidates, view("10.1.2.3")) is first for _ in range(20)))
        counts = Counter(
            policy.select(candidates, view("10.{}.{}.1".format(n // 250, n % 250))).name
            for n in range(10000)
        )
        self.assertSpread(counts, candidates)

    def test_sources(self):
        """
        A header, a cookie or a capture of the match is hashed as the
        client address would be: the same value, the same member.
        """
        candidates = members(1, 1, 1)
        cases = [
            (HashKey("header", b"x-user"), dict(headers=[(b"X-User", [b"alice"])])),
            (HashKey("cookie", b"sid"), dict(headers=[(b"Cookie", [b"a=1; sid=alice"])])),
            (HashKey("match", 1), dict(captures=(b"/u/alice/x", b"alice"))),
        ]
        expected = rendezvous(hash64(b"alice"), candidates)
        for hashKey, parts in cases:
            request = selectionRequest(
                "10.0.0.1", parts.get("headers", []), b"/", parts.get("captures", ())
            )
            self.assertIs(ConsistentHash(hashKey, 3).select(candidates, request), expected, hashKey)

    def test_missingKeyRoundRobin(self):
        """
        A request without the key (no such header) is balanced in round
        robin, as HAProxy's C{balance hdr} does.
        """
        candidates = members(1, 1, 1)
        policy = ConsistentHash(HashKey("header", b"x-user"), 3)
        request = selectionRequest("10.0.0.1", [], b"/")
        names = "".join(policy.select(candidates, request).name for _ in range(6))
        self.assertEqual(names, "abcabc")
