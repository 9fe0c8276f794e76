"""A resumed epoch's batches: the loader's order rebuilt, the batches already trained skipped by
index (no data loaded for them). Used by :mod:`deepdive.engine.checkpoint` after a restart.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Optional

__all__ = ["resume_iterator"]

_END = object()


class _SkipBatches:
    """A batch sampler without the first ``skip`` batches of ``inner`` — dropped by index, no data loaded.

    Its iterator is lazy, like a sampler's: the draws that decide the order (a ``RandomSampler``'s
    seed or permutation) happen when the DataLoader first asks for indices, after the loader drew
    its own base seed, as in the uninterrupted run. :meth:`prime` makes those draws now (the
    single-process case: before the RNG is set back to where the save left it)."""

    def __init__(self, inner: Iterable[Any], skip: int):
        self.inner, self.skip = inner, skip
        self._primed: Optional[Iterator[Any]] = None

    def prime(self) -> None:
        if self._primed is None:
            it = iter(self.inner)
            for _ in range(self.skip):
                if next(it, _END) is _END:
                    break
            self._primed = it

    def __iter__(self) -> Iterator[Any]:
        self.prime()
        it, self._primed = self._primed, None
        yield from it  # type: ignore[misc]

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.skip)  # type: ignore[arg-type]


def resume_iterator(loader: Any, skip: int) -> Iterator[Any]:
    """An iterator over ``loader`` without its first ``skip`` batches, its order decided (call it with
    the RNG as it was at the start of the epoch, then set the RNG to the saved step's state).

    A map-style DataLoader is rebuilt around a batch sampler that skips by index; anything else is
    consumed ``skip`` items (an iterable dataset has no index to skip by). With worker processes the
    order and the data are the same, the workers' own random augmentations are not (their RNGs
    advanced through the skipped batches in the first run)."""
    from torch.utils.data import DataLoader, IterableDataset

    if isinstance(loader, DataLoader) and loader.batch_sampler is not None \
            and not isinstance(loader.dataset, IterableDataset):
        batches = _SkipBatches(loader.batch_sampler, skip)
        extra: dict[str, Any] = {}
        if loader.num_workers:
            extra = {"prefetch_factor": loader.prefetch_factor, "persistent_workers": False}
        resumed = DataLoader(loader.dataset, batch_sampler=batches, num_workers=loader.num_workers,
                             collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, timeout=loader.timeout,
                             worker_init_fn=loader.worker_init_fn,
                             multiprocessing_context=loader.multiprocessing_context, generator=loader.generator,
                             **extra)
        it = iter(resumed)  # the loader's base seed, as the first run drew it
        batches.prime()  # the sampler's draws (already made by a multi-worker loader's prefetch)
        return it
    it = iter(loader)
    for _ in range(skip):
        if next(it, _END) is _END:
            break
    return it
