"""The training loader's saved position makes a new loader continue the epoch exactly where the old one stopped."""

import pytest

from kd.data.examples import EpochSampler
from kd.data.resumable_loader import ResumableDataLoader


class IndexEcho:
    """A dataset whose item ``(index, epoch)`` is that key (what DistillationExamples is indexed by)."""

    def __init__(self, size):
        self.size = size

    def __len__(self):
        return self.size

    def __getitem__(self, key):
        return key


def make_loader(size=10, batch_size=3, drop_last=True):
    return ResumableDataLoader(IndexEcho(size), batch_size=batch_size, sampler=EpochSampler(size, seed=7),
                               collate_fn=lambda items: [i for i, _ in items], drop_last=drop_last)


def epoch_batches(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return list(loader)


@pytest.mark.parametrize("taken", [0, 1, 2, 3])
def test_resumed_loader_yields_the_rest_of_the_epoch(taken):
    full = epoch_batches(make_loader(), epoch=1)
    assert len(full) == 3 and sorted(i for b in full for i in b) != list(range(9))  # shuffled, 9 of 10 used

    killed = make_loader()
    killed.sampler.set_epoch(1)
    iterator = iter(killed)
    for _ in range(taken):
        next(iterator)
    state = killed.state_dict()
    assert state == {"epoch": 1, "batches": taken}

    resumed = make_loader()
    resumed.load_state_dict(state)
    assert epoch_batches(resumed, epoch=1) == full[taken:]
    # only the resumed epoch is shortened; the next one is whole and equals a fresh loader's
    assert epoch_batches(resumed, epoch=2) == epoch_batches(make_loader(), epoch=2)
    assert len(resumed) == 3  # Lightning counts the whole epoch; the restored progress covers the skipped part


def test_state_counts_skipped_batches_so_a_second_kill_resumes_correctly():
    full = epoch_batches(make_loader(), epoch=0)
    first = make_loader()
    first.load_state_dict({"epoch": 0, "batches": 1})
    iterator = iter(first)
    next(iterator)  # batch 2 of the epoch
    assert first.state_dict() == {"epoch": 0, "batches": 2}
    second = make_loader()
    second.load_state_dict(first.state_dict())
    assert epoch_batches(second, epoch=0) == full[2:]


def test_a_position_past_the_epoch_is_refused():
    with pytest.raises(ValueError, match="outside an epoch of 10"):
        EpochSampler(10, seed=0).resume_at(0, 11)
