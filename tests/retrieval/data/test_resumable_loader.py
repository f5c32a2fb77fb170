"""The training loader's saved position makes a new loader continue the epoch exactly where the old one stopped."""

import pytest

from kd.retrieval.data.examples import EpochSampler
from kd.retrieval.data.resumable_loader import ResumableDataLoader


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


def test_processes_get_disjoint_equal_shares_of_each_epoch():
    shares = [EpochSampler(11, seed=3, num_replicas=3, rank=r) for r in range(3)]
    for sampler in shares:
        sampler.set_epoch(2)
    orders = [[i for i, epoch in sampler] for sampler in shares]
    assert [len(o) for o in orders] == [3, 3, 3] and all(len(s) == 3 for s in shares)
    assert len(set().union(*orders)) == 9  # disjoint; the epoch's last 11 % 3 = 2 examples are left out
    whole = EpochSampler(11, seed=3).order(2)
    assert [i for o in zip(*orders) for i in o] == whole[:9]  # rank r takes positions r, r+3, ... of one order


def test_a_process_resumes_within_its_own_share():
    full = EpochSampler(12, seed=5, num_replicas=2, rank=1)
    expected = full.order(0)
    resumed = EpochSampler(12, seed=5, num_replicas=2, rank=1)
    resumed.resume_at(0, 4)
    assert [i for i, _ in resumed] == expected[4:]
