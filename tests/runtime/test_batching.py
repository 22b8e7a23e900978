import threading

import numpy as np
import pytest

from classifier.runtime.batching import MicroBatcher
from classifier.runtime.errors import Overloaded


def test_concurrent_images_share_forward_passes_bounded_by_max_batch_size():
    gate = threading.Event()
    sizes = []

    def run_batch(images):
        gate.wait(5)
        sizes.append(len(images))
        return np.stack([image * 2 for image in images])

    batcher = MicroBatcher(run_batch, max_batch_size=4, max_delay_s=0.05, queue_size=64)
    futures = [batcher.submit(np.array([i])) for i in range(10)]
    gate.set()
    assert [f.result(5)[0] for f in futures] == [2 * i for i in range(10)]
    assert sum(sizes) == 10 and max(sizes) <= 4
    assert len(sizes) <= 4  # the first may run alone while the rest queue; then full batches
    assert batcher.stats.images == 10 and batcher.stats.mean_batch_size == pytest.approx(10 / len(sizes))


def test_a_failing_batch_fails_only_its_own_requests():
    calls = []

    def run_batch(images):
        calls.append(len(images))
        if len(calls) == 1:
            raise MemoryError("out of memory")
        return np.stack(images)

    batcher = MicroBatcher(run_batch, max_batch_size=1, max_delay_s=0, queue_size=8)
    first, second = batcher.submit(np.array([1])), batcher.submit(np.array([2]))
    with pytest.raises(MemoryError):
        first.result(5)
    assert second.result(5)[0] == 2


def test_full_queue_is_refused_at_once():
    gate = threading.Event()
    batcher = MicroBatcher(
        lambda images: gate.wait(5) and np.stack(images), max_batch_size=1, max_delay_s=0, queue_size=2
    )
    accepted = []
    with pytest.raises(Overloaded):
        for i in range(10):
            accepted.append(batcher.submit(np.array([i])))
    gate.set()
    assert 2 <= len(accepted) <= 3  # one may already be in the worker's hands


def test_several_workers_run_batches_at_the_same_time():
    both_running = threading.Barrier(2)

    def run_batch(images):
        both_running.wait(5)  # breaks (and fails the batch) unless a second worker is inside too
        return np.stack(images)

    batcher = MicroBatcher(run_batch, max_batch_size=1, max_delay_s=0, queue_size=8, workers=2)
    first, second = batcher.submit(np.array([1])), batcher.submit(np.array([2]))
    assert (first.result(10)[0], second.result(10)[0]) == (1, 2)
    assert batcher.stats.batches == 2


def test_images_submitted_together_share_one_forward_pass_without_waiting_for_more():
    sizes = []

    def run_batch(images):
        sizes.append(len(images))
        return np.stack(images)

    batcher = MicroBatcher(run_batch, max_batch_size=4, max_delay_s=0, queue_size=64)
    for _ in range(3):
        futures = batcher.submit_many([np.array([i]) for i in range(4)])
        assert [f.result(5)[0] for f in futures] == [0, 1, 2, 3]
    assert sizes == [4, 4, 4]


def test_a_group_that_does_not_fit_the_queue_is_refused_whole():
    gate = threading.Event()
    ran = []

    def run_batch(images):
        gate.wait(5)
        ran.extend(int(image[0]) for image in images)
        return np.stack(images)

    batcher = MicroBatcher(run_batch, max_batch_size=1, max_delay_s=0, queue_size=3)
    first = batcher.submit(np.array([0]))  # taken by the worker, which blocks on the gate
    while batcher.queue_depth:
        pass
    with pytest.raises(Overloaded):
        batcher.submit_many([np.array([i]) for i in range(1, 5)])  # 4 images, room for 3
    gate.set()
    assert first.result(5)[0] == 0
    later = batcher.submit(np.array([9]))
    assert later.result(5)[0] == 9
    assert ran == [0, 9]  # none of the refused group ran


def test_closing_answers_every_queued_image_then_refuses_new_ones_and_drops_the_model():
    from classifier.runtime.errors import BatcherClosed

    gate = threading.Event()

    def run_batch(images):
        gate.wait(5)
        return np.stack([image + 1 for image in images])

    batcher = MicroBatcher(run_batch, max_batch_size=2, max_delay_s=0, queue_size=64, workers=2)
    queued = [batcher.submit(np.array([i])) for i in range(7)]
    closing = threading.Thread(target=batcher.close)
    closing.start()
    gate.set()
    closing.join(10)
    assert not closing.is_alive()
    assert [future.result(0)[0] for future in queued] == [i + 1 for i in range(7)]
    assert not any(thread.is_alive() for thread in batcher._threads)
    with pytest.raises(BatcherClosed):
        batcher.submit(np.array([9]))
    assert batcher._run_batch is not run_batch  # the model's function is no longer referenced
