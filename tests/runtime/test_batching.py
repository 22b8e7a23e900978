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


def held_pass():
    """A run_batch that signals ``inside`` when a pass starts and holds it until ``gate`` is set."""
    gate, inside = threading.Event(), threading.Event()

    def run_batch(images):
        inside.set()
        gate.wait(5)
        return np.stack(images)

    return run_batch, gate, inside


def test_run_now_runs_a_lone_image_in_the_calling_thread_and_counts_it():
    threads, started = [], []

    def run_batch(images):
        threads.append(threading.current_thread())
        return np.stack([image * 3 for image in images])

    batcher = MicroBatcher(
        run_batch, max_batch_size=4, max_delay_s=0, queue_size=8, on_start=lambda: started.append(1), workers=2
    )
    started.clear()  # the workers' own on_start calls
    rows = [batcher.run_now(np.array([index])) for index in range(3)]
    assert [int(row[0]) for row in rows] == [0, 3, 6]
    assert threads == [threading.current_thread()] * 3  # no hand-off to a worker and back
    assert started == [1]  # the library knobs set once in this thread, as in each worker
    assert (batcher.stats.batches, batcher.stats.images, batcher.stats.last_batch_size) == (3, 3, 1)


def test_run_now_leaves_the_image_to_the_queue_unless_a_worker_would_run_it_alone_at_once():
    run_batch, gate, inside = held_pass()
    waiting = MicroBatcher(lambda images: np.stack(images), max_batch_size=4, max_delay_s=0.01, queue_size=8)
    assert waiting.run_now(np.array([1])) is None  # a batcher that waits for batches to fill never runs inline

    busy = MicroBatcher(run_batch, max_batch_size=1, max_delay_s=0, queue_size=8, workers=1)
    first = busy.submit(np.array([1]))
    assert inside.wait(5)
    assert busy.run_now(np.array([2])) is None  # the one pass this batcher may run at once is taken
    second = busy.submit(np.array([3]))  # waits in the queue behind the running pass
    gate.set()
    assert (first.result(5)[0], second.result(5)[0]) == (1, 3)


def test_forward_passes_never_outnumber_the_workers():
    running, most, lock = [0], [0], threading.Lock()

    def run_batch(images):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        for _ in range(2000):  # hold the pass a little
            pass
        with lock:
            running[0] -= 1
        return np.stack(images)

    batcher = MicroBatcher(run_batch, max_batch_size=2, max_delay_s=0, queue_size=256, workers=2)

    wrong = []  # an assert in a caller thread would not fail the test: the threads report here instead

    def caller(index):
        for step in range(40):
            pixels = np.array([index * 100 + step])
            row = batcher.run_now(pixels)
            if (row if row is not None else batcher.submit(pixels).result(5))[0] != index * 100 + step:
                wrong.append((index, step))

    callers = [threading.Thread(target=caller, args=(index,)) for index in range(6)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(30)
    assert wrong == [] and batcher.stats.images == 240 and 1 <= most[0] <= 2


def test_run_now_after_close_refuses():
    from classifier.runtime.errors import BatcherClosed

    batcher = MicroBatcher(lambda images: np.stack(images), max_batch_size=1, max_delay_s=0, queue_size=8)
    batcher.close()
    with pytest.raises(BatcherClosed):
        batcher.run_now(np.array([1]))


def test_close_returns_only_after_a_pass_run_now_started_has_ended():
    run_batch, gate, inside = held_pass()
    batcher = MicroBatcher(run_batch, max_batch_size=1, max_delay_s=0, queue_size=8, workers=2)
    rows = []
    caller = threading.Thread(target=lambda: rows.append(batcher.run_now(np.array([7]))))
    caller.start()
    assert inside.wait(5)
    closing = threading.Thread(target=batcher.close)
    closing.start()
    closing.join(0.2)
    assert closing.is_alive()  # the model is still running in the caller's thread: not yet closed
    gate.set()
    closing.join(5)
    caller.join(5)
    assert not closing.is_alive() and rows[0][0] == 7
    assert batcher._run_batch is not run_batch
