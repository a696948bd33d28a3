"""
Timeouts that are cheap to start, push back and stop.

A proxy restarts a timeout for nearly every event: a client connection is
idle, then busy, then idle again; a backend connection waits for a response
head, then for each piece of the body, then sits in the pool.  With a
Twisted C{DelayedCall} for each, every request made and cancelled several
of them and kept the reactor's heap churning.

A L{Deadline} keeps one C{DelayedCall} at most.  Starting or stopping it
only notes when it is due; when the call fires early (the deadline was
pushed back meanwhile) it schedules itself again for what is left, and when
it fires with nothing due it does nothing.
"""


class Deadline:
    """
    One timeout that can be started, pushed back and stopped any number of
    times.

    @ivar due: when it expires (the clock's seconds), or L{None} when stopped.
    """

    __slots__ = ("_clock", "_call", "_fires", "_callback", "_args", "due")

    def __init__(self, clock):
        """
        @param clock: an C{IReactorTime}.
        """
        self._clock = clock
        self._call = None
        # When the scheduled call fires: noted here, as asking the call
        # (its getTime) is one more call for every start.
        self._fires = None
        self._callback = None
        self._args = ()
        self.due = None

    def start(self, seconds, callback, *args):
        """
        Call C{callback(*args)} in C{seconds}, in place of whatever was due.
        """
        clock = self._clock
        due = clock.seconds() + seconds
        self.due = due
        self._callback = callback
        self._args = args
        call = self._call
        if call is None:
            self._call = clock.callLater(seconds, self._fire)
            self._fires = due
        elif self._fires > due:
            call.reset(seconds)
            self._fires = due

    def restart(self, seconds):
        """
        Push the deadline to C{seconds} from now, when one is running.
        """
        if self.due is not None:
            due = self.due = self._clock.seconds() + seconds
            if self._fires > due:
                self._call.reset(seconds)
                self._fires = due

    def stop(self):
        """
        Stop it; a call already scheduled fires later and does nothing.
        """
        self.due = None
        self._callback = None
        self._args = ()

    def cancel(self):
        """
        Stop it for good, cancelling the scheduled call (when its owner
        goes away, so that the reactor does not keep the owner meanwhile).
        """
        self.due = None
        self._callback = None
        self._args = ()
        call, self._call = self._call, None
        if call is not None:
            call.cancel()

    def _fire(self):
        self._call = None
        due = self.due
        if due is None:
            return
        clock = self._clock
        now = clock.seconds()
        if now < due:
            self._call = clock.callLater(due - now, self._fire)
            self._fires = due
            return
        self.due = None
        callback, args = self._callback, self._args
        self._callback = None
        self._args = ()
        callback(*args)
