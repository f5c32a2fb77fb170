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
    from kd.retrieval.models.cross_encoder import CrossEncoder

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


def test_sharded_teacher_scoring_over_two_processes_equals_one_process(teacher_dir, tmp_path):
    import numpy as np

    from conftest import FILLER, TOPICS
    from distributed_helpers import sharded_scoring
    from kd.retrieval.models.cross_encoder import CrossEncoder
    from kd.retrieval.teacher_cache import TeacherScoreCache, pair_key

    queries = [q for _, q, _, _ in TOPICS for _ in range(3)]
    documents = [d for _, _, _, d in TOPICS] + FILLER[:12] + [d for _, _, _, d in TOPICS][::-1]
    queries, documents = queries + queries[:5], documents + documents[:5]  # repeated pairs are scored once
    os_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        scored = sharded_scoring(str(teacher_dir), str(tmp_path / "two"), queries, documents, devices=2)
    finally:
        torch.set_num_threads(os_threads)
    merged = TeacherScoreCache(tmp_path / "two", str(teacher_dir), "fp32", 48)
    assert scored == 36 and len(merged) == 36
    assert not list((tmp_path / "two" / "teacher_scores").glob("*.shard-*"))  # shards merged and removed

    expected = CrossEncoder(str(teacher_dir), max_length=48).score(queries, documents)
    got = np.array([merged.scores[pair_key(q, d)] for q, d in zip(queries, documents)])
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)


@pytest.mark.slow
def test_kd_train_with_ddp_over_two_cpu_processes_end_to_end(tiny_model_dir, tiny_beir_dir, tmp_path):
    """The real command: 8 training examples, 2 processes x 2 per batch = 2 steps per epoch, 2 epochs."""
    import json
    import os
    import subprocess
    import sys

    from tests.cli.test_cli_train import tiny_overrides

    out = tmp_path / "ddp"
    overrides = [o for o in tiny_overrides(tiny_model_dir, tiny_beir_dir, out, tmp_path / "cache")
                 if not o.startswith(("paths.output_dir", "trainer.max_epochs"))]
    overrides += ["data.batch_size=2", "trainer.max_epochs=2", "trainer=ddp", "trainer.devices=2",
                  "trainer.accelerator=cpu", f"hydra.run.dir={out}"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "kd.cli.train", *overrides], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resources"]["processes"] == 2 and metrics["resources"]["train_steps"] == 4
    assert metrics["after"]["recall@10"] > 10 / 32  # better than a random ranking of the 32 documents
