import threading
import time

import pytest

from classifier.api.exceptions import api_error
from classifier.runtime.budget import PixelBudget
from classifier.runtime.errors import Overloaded


def test_pixels_are_held_until_released():
    budget = PixelBudget(100)
    assert budget.acquire(60, timeout=0)
    assert not budget.acquire(60, timeout=0.01)
    budget.release(60)
    assert budget.acquire(60, timeout=0) and budget.in_use == 60


def test_a_waiting_acquire_goes_ahead_as_soon_as_pixels_are_released():
    budget = PixelBudget(100)
    budget.acquire(100, timeout=0)
    threading.Timer(0.05, budget.release, args=(100,)).start()
    started = time.monotonic()
    assert budget.acquire(100, timeout=5)
    assert time.monotonic() - started < 2


def test_smaller_requests_fit_beside_a_held_one():
    budget = PixelBudget(100)
    budget.acquire(70, timeout=0)
    assert budget.acquire(30, timeout=0)
    assert not budget.acquire(1, timeout=0)


def test_a_request_above_the_capacity_is_charged_the_whole_capacity():
    budget = PixelBudget(100)
    assert budget.acquire(500, timeout=0) and budget.in_use == 100
    budget.release(500)
    assert budget.in_use == 0


def test_hold_gives_the_pixels_back_even_when_the_block_fails():
    budget = PixelBudget(100)
    with pytest.raises(RuntimeError), budget.hold(80, timeout=0):
        assert budget.in_use == 80
        raise RuntimeError("decoding failed")
    assert budget.in_use == 0


def test_hold_without_room_in_time_is_overloaded_with_retry_after():
    budget = PixelBudget(100)
    budget.acquire(100, timeout=0)
    with pytest.raises(Overloaded) as refused, budget.hold(1, timeout=0.01):
        pass
    answer = api_error(refused.value)  # what the API answers
    assert answer.status_code == 503 and answer.wait >= 1
    assert budget.in_use == 100


def test_concurrent_holders_never_exceed_the_capacity():
    budget = PixelBudget(100)
    peak = []

    def work():
        for _ in range(50):
            with budget.hold(40, timeout=5):
                peak.append(budget.in_use)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert max(peak) <= 100 and budget.in_use == 0
