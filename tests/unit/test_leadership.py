"""The scheduler's lease decisions (app/leadership.py), without Redis: when a candidate leads, and that two never do."""

from __future__ import annotations

import random

import pytest

from app.leadership import Leadership, LeaseTiming

TIMING = LeaseTiming(15.0)


def test_the_timing_follows_from_the_lease():
    assert (TIMING.renew_every, TIMING.margin, TIMING.poll_every) == (5.0, 3.0, 1.0)
    assert LeaseTiming(3.0).poll_every == pytest.approx(0.6)


def test_a_candidate_that_never_won_stands_by_and_polls():
    leadership = Leadership(TIMING)
    assert not leadership.active(0.0)
    assert leadership.wait(0.0) == TIMING.poll_every
    leadership.record(0.0, False)
    leadership.record(1.0, None)
    assert not leadership.active(1.0)


def test_a_won_lease_counts_from_when_the_request_was_sent_minus_the_margin():
    leadership = Leadership(TIMING)
    leadership.record(100.0, True)
    assert leadership.active(100.0 + 15.0 - 3.0 - 0.001)
    assert not leadership.active(100.0 + 15.0 - 3.0)
    assert leadership.wait(100.5) == TIMING.renew_every


def test_a_leader_that_cannot_reach_redis_stops_before_its_lease_could_lapse():
    leadership = Leadership(TIMING)
    leadership.record(0.0, True)
    leadership.record(5.0, None)  # no answer: the lease from t=0 still holds, nothing more
    leadership.record(10.0, None)
    assert leadership.active(11.9)
    assert not leadership.active(12.0)
    assert leadership.wait(11.0) == pytest.approx(1.0)  # wakes at its deadline, not a full renew interval later


def test_a_leader_told_the_lease_is_not_its_own_stops_at_once():
    leadership = Leadership(TIMING)
    leadership.record(0.0, True)
    leadership.record(5.0, False)
    assert not leadership.active(5.0)


class LeaseModel:
    """What Redis does with the lease key: SET NX PX and a token-checked PEXPIRE, applied when a request *arrives*."""

    def __init__(self, lease: float):
        self.lease, self.holder, self.expires = lease, None, 0.0

    def try_hold(self, who: str, arrives: float) -> bool:
        if self.holder is not None and arrives >= self.expires:
            self.holder = None
        if self.holder in (None, who):
            self.holder, self.expires = who, arrives + self.lease
            return True
        return False


@pytest.mark.parametrize("seed", range(30))
def test_two_candidates_never_lead_at_once_whatever_the_network_does(seed):
    """Random request delays and lost answers for both candidates: at no instant are both active."""
    rng = random.Random(seed)
    timing = LeaseTiming(3.0)
    model = LeaseModel(timing.lease)
    candidates = {name: Leadership(timing) for name in ("a", "b")}
    next_try = {"a": 0.0, "b": 0.05}
    now, step, leader_seen = 0.0, 0.01, set()
    while now < 120.0:
        for name, leadership in candidates.items():
            if now >= next_try[name]:
                outcome = None
                if rng.random() > 0.2:  # otherwise the request never arrives (Redis unreachable)
                    held = model.try_hold(name, arrives=now + rng.uniform(0, 0.5))
                    outcome = held if rng.random() > 0.2 else None  # the answer may be lost on the way back
                leadership.record(now, outcome)
                next_try[name] = now + leadership.wait(now)
        active = [name for name, leadership in candidates.items() if leadership.active(now)]
        assert len(active) <= 1, f"both lead at t={now:.2f}"
        leader_seen.update(active)
        now += step
    assert leader_seen  # the test exercised leadership at all
