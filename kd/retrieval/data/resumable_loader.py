"""A DataLoader that remembers how far into the epoch training got, so a killed run resumes mid-epoch.

Lightning saves the ``state_dict()`` of every stateful training loader in its checkpoints
(``checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]``). It would hand it back to
``load_state_dict()`` on resume, but only if the loader is built after the checkpoint is restored, and
``trainer.estimated_stepping_batches`` (used to size the LR schedule) builds it earlier; so
``RetrievalDistillationModule`` applies the saved state itself in ``on_train_start``. The state is
``{"epoch": e, "batches": n}``: the epoch being trained and how many of its batches the training loop has taken.
On resume the ``EpochSampler`` regenerates epoch ``e``'s order (it depends only on the seed and the epoch) and
starts after the first ``n * batch_size`` examples, so the resumed run sees exactly the batches the killed run
had not trained on. Batches are counted where the loop takes them (not where workers prefetch them), and
Lightning does not prefetch from a loader with a length, so ``n`` is the number of batches trained on when the
checkpoint is written at the end of a training step.
"""

from __future__ import annotations

from typing import Any, Iterator

from torch.utils.data import DataLoader

from kd.retrieval.data.examples import EpochSampler


class ResumableDataLoader(DataLoader):
    """``DataLoader`` over an ``EpochSampler`` with ``state_dict``/``load_state_dict`` for mid-epoch resume."""

    def __init__(self, *args: Any, sampler: EpochSampler, **kwargs: Any):
        if not isinstance(sampler, EpochSampler):
            raise TypeError(f"ResumableDataLoader needs an EpochSampler, got {type(sampler).__name__}")
        super().__init__(*args, sampler=sampler, **kwargs)
        self._epoch = 0
        self._batches = 0  # batches of self._epoch handed to the training loop (incl. those skipped on resume)

    def __iter__(self) -> Iterator[Any]:
        sampler: EpochSampler = self.sampler
        resume = sampler._resume
        skipped = resume[1] // self.batch_size if resume is not None and resume[0] == sampler.epoch else 0
        self._epoch, self._batches = sampler.epoch, skipped
        for batch in super().__iter__():
            self._batches += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        if self.sampler.epoch != self._epoch:  # the sampler moved on to an epoch not yet iterated
            return {"epoch": self.sampler.epoch, "batches": 0}
        return {"epoch": self._epoch, "batches": self._batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, batches = int(state["epoch"]), int(state["batches"])
        self._epoch, self._batches = epoch, batches
        self.sampler.resume_at(epoch, min(batches * self.batch_size, len(self.sampler)))
