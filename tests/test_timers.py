"""
Tests for L{proxyws.timers}.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from proxyws.timers import Deadline


class DeadlineTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.deadline = Deadline(self.clock)
        self.fired = []

    def test_fires_when_due(self):
        self.deadline.start(5, self.fired.append, "x")
        self.clock.advance(4.9)
        self.assertEqual(self.fired, [])
        self.clock.advance(0.1)
        self.assertEqual(self.fired, ["x"])
        self.assertIsNone(self.deadline.due)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_restart_pushes_back_without_new_calls(self):
        """
        Pushing the deadline back keeps the one scheduled call, which
        schedules itself again for what is left when it fires early.
        """
        self.deadline.start(5, self.fired.append, "x")
        self.clock.advance(3)
        self.deadline.restart(5)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(2)
        self.assertEqual(self.fired, [])
        self.clock.advance(2.9)
        self.assertEqual(self.fired, [])
        self.clock.advance(0.1)
        self.assertEqual(self.fired, ["x"])

    def test_restart_when_stopped_does_nothing(self):
        self.deadline.restart(5)
        self.assertIsNone(self.deadline.due)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_then_fire_does_nothing(self):
        self.deadline.start(5, self.fired.append, "x")
        self.deadline.stop()
        self.clock.advance(10)
        self.assertEqual(self.fired, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_start_again_replaces_callback(self):
        """
        Starting again replaces what was due: only the last callback runs,
        at its own time.
        """
        self.deadline.start(5, self.fired.append, "first")
        self.clock.advance(1)
        self.deadline.stop()
        self.deadline.start(10, self.fired.append, "second")
        self.clock.advance(5)
        self.assertEqual(self.fired, [])
        self.clock.advance(6)
        self.assertEqual(self.fired, ["second"])

    def test_earlier_deadline_moves_the_call(self):
        """
        A deadline earlier than the scheduled call moves the call forward.
        """
        self.deadline.start(60, self.fired.append, "idle")
        self.deadline.start(1, self.fired.append, "short")
        self.clock.advance(1)
        self.assertEqual(self.fired, ["short"])

    def test_cancel_removes_the_call(self):
        self.deadline.start(5, self.fired.append, "x")
        self.deadline.cancel()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertEqual(self.fired, [])

    def test_callback_may_start_it_again(self):
        def again():
            self.fired.append(self.clock.seconds())
            if len(self.fired) < 3:
                self.deadline.start(2, again)

        self.deadline.start(2, again)
        self.clock.advance(2)
        self.clock.advance(2)
        self.clock.advance(2)
        self.clock.advance(2)
        self.assertEqual(self.fired, [2, 4, 6])

    def test_stopLetsTheCallbackGo(self):
        """
        A stopped deadline does not keep its callback (and what the
        callback holds) until the scheduled call fires.
        """
        import gc
        import weakref

        class Owner:
            def timedOut(self):
                pass

        owner = Owner()
        ref = weakref.ref(owner)
        self.deadline.start(60, owner.timedOut)
        self.deadline.stop()
        del owner
        gc.collect()
        self.assertIsNone(ref())
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
