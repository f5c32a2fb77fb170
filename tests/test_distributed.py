"""Training over 2 processes (gloo, CPU) equals one process on the concatenated batch: loss and gradients."""

import pytest
import torch

from distributed_helpers import build_module, equivalence_worker, loss_and_grads, run_spawned


def _examples():
    """4 examples per rank; cross-rank traps for the in-batch mask: q1 appears on both ranks, and rank 1 has
    d2 (q2's positive, on rank 0) as a negative."""
    from conftest import TOPICS

    text = {q: t for q, t, _, _ in TOPICS} | {d: t for _, _, d, t in TOPICS}
    rows = [("q1", "d1", "d5"), ("q2", "d2", "d6"), ("q3", "d3", "d1"), ("q4", "d4", "d8"),
            ("q5", "d5", "d2"), ("q1", "d1", "d7"), ("q7", "d7", "d3"), ("q8", "d8", "d4")]
    examples = [{"query_id": q, "query": text[q], "doc_ids": [p, n], "docs": [text[p], text[n]]} for q, p, n in rows]
    positives = {q: {p} for q, p, _ in rows}
    return examples, positives


@pytest.fixture(scope="module")
def teacher_dir(tiny_model_dir, tmp_path_factory):
    from kd.models.cross_encoder import CrossEncoder

    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("tiny-teacher")
    CrossEncoder(str(tiny_model_dir), max_length=48).save(folder)  # its fresh head is saved: same in every process
    return folder


def test_two_processes_equal_one_process_on_the_concatenated_batch(tiny_model_dir, teacher_dir, tmp_path):
    examples, positives = _examples()
    run_spawned(equivalence_worker, 2, str(tiny_model_dir), str(teacher_dir), examples, positives, str(tmp_path))
    results = torch.load(tmp_path / "distributed.pt")

    reference_loss, reference_grads = loss_and_grads(build_module(str(tiny_model_dir), str(teacher_dir), True),
                                                     examples, positives)
    gathered = results["gather"]
    assert gathered["losses"] == pytest.approx([reference_loss] * 2, abs=1e-5)  # every rank: the global loss
    assert set(gathered["grads"]) == set(reference_grads)
    for name, grad in reference_grads.items():
        torch.testing.assert_close(gathered["grads"][name], grad, atol=1e-5, rtol=1e-4, msg=name)

    # without gathering each rank only sees its own 4 queries: loss and gradients differ (the test can fail)
    local = results["local"]
    assert abs(sum(local["losses"]) / 2 - reference_loss) > 1e-3
    assert max((local["grads"][n] - g).abs().max().item() for n, g in reference_grads.items()) > 1e-4
