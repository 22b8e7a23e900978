"""What the compile gate measures about an engine: how closely it agrees with a reference engine (fp32) on the
same pixels, and how many images per second it runs. Engine-agnostic and torch-free: anything with
``run(NxHxWx3 uint8) -> Nxclasses probabilities`` is measured."""

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

TOP_K = 5  # the top-5 overlap's k (fewer when the model has fewer classes)


class Runs(Protocol):
    def run(self, batch: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Agreement:
    """A candidate engine's answers against a reference's on the same images."""

    images: int
    top1: float  # the share of images whose top-1 class is the reference's
    top5_overlap: float  # the mean share of the reference's top-5 classes that are in the candidate's top-5
    max_confidence_difference: float  # the largest |p - p_reference| over every image and class

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class Throughput:
    """Images per second of one engine, ``concurrency`` callers running batches of ``batch`` images."""

    images_per_s: float
    batch: int
    concurrency: int
    images: int
    seconds: float
    cpu_seconds: float = 0.0  # the process's CPU time over the same span (every thread)

    @property
    def cpu_ms_per_image(self) -> float:
        """CPU per image: unlike the rate, it does not drop when neighbours take the cores for a while."""
        return 1000.0 * self.cpu_seconds / self.images if self.images else float("inf")

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def agreement(candidate: np.ndarray, reference: np.ndarray, *, k: int = TOP_K) -> Agreement:
    """Compare two Nxclasses probability arrays row by row (the same images in the same order)."""
    if candidate.shape != reference.shape or candidate.ndim != 2 or len(candidate) == 0:
        raise ValueError(
            f"two equal non-empty Nxclasses arrays are compared (got {candidate.shape}, {reference.shape})"
        )
    k = min(k, candidate.shape[1])
    top_candidate = np.argsort(-candidate, axis=1, kind="stable")[:, :k]
    top_reference = np.argsort(-reference, axis=1, kind="stable")[:, :k]
    overlap = [len(set(mine) & set(theirs)) / k for mine, theirs in zip(top_candidate, top_reference)]
    return Agreement(
        images=len(candidate),
        top1=float(np.mean(top_candidate[:, 0] == top_reference[:, 0])),
        top5_overlap=float(np.mean(overlap)),
        max_confidence_difference=float(np.abs(candidate.astype(np.float64) - reference).max()),
    )


def measure_agreement(candidate: Runs, reference: Runs, batches: Iterable[np.ndarray], *, k: int = TOP_K) -> Agreement:
    """Run both engines on the same uint8 NxHxWx3 ``batches`` and compare their answers (``agreement``)."""
    mine, theirs = [], []
    for batch in batches:
        mine.append(candidate.run(batch))
        theirs.append(reference.run(batch))
    if not mine:
        raise ValueError("agreement needs at least one batch of images")
    return agreement(np.concatenate(mine), np.concatenate(theirs), k=k)


def measure_throughput(
    engine: Runs,
    batch: np.ndarray,
    *,
    seconds: float = 2.0,
    concurrency: int = 1,
    warmup: int = 2,
    clock: Callable[[], float] = time.perf_counter,
) -> Throughput:
    """Run ``batch`` on ``engine`` from ``concurrency`` threads for about ``seconds`` (after ``warmup`` runs
    each, not counted); every thread finishes the run it started. Returns the images per second and the
    process's CPU per image (nothing else should run in the process meanwhile)."""
    for _ in range(warmup):
        engine.run(batch)
    counts = [0] * concurrency
    deadline = clock() + seconds

    def worker(index: int) -> None:
        while True:
            engine.run(batch)
            counts[index] += len(batch)
            if clock() >= deadline:
                return

    started, cpu_started = clock(), time.process_time()
    threads = [threading.Thread(target=worker, args=(index,), daemon=True) for index in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed, cpu = clock() - started, time.process_time() - cpu_started
    images = sum(counts)
    return Throughput(
        images_per_s=images / elapsed if elapsed > 0 else 0.0,
        batch=len(batch),
        concurrency=concurrency,
        images=images,
        seconds=elapsed,
        cpu_seconds=cpu,
    )
