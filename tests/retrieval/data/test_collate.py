import torch

from kd.retrieval.data.collate import DistillationCollator


class _Tok:
    def tokenize(self, *texts):
        n = len(texts[0])
        return {"input_ids": torch.zeros(n, 3, dtype=torch.long), "attention_mask": torch.ones(n, 3, dtype=torch.long)}


def test_in_batch_exclude_marks_other_copies_of_known_positives():
    examples = [
        {"query_id": "q1", "query": "x", "doc_ids": ["p1", "n1"], "docs": ["", ""]},
        {"query_id": "q2", "query": "y", "doc_ids": ["p1", "p3"], "docs": ["", ""]},
    ]
    batch = DistillationCollator(_Tok(), _Tok(), positives={"q1": {"p1", "p3"}, "q2": {"p1"}})(examples)
    # columns: q1/p1, q1/n1, q2/p1, q2/p3
    assert batch["in_batch_exclude"].tolist() == [[False, False, True, True], [True, False, False, False]]
    assert batch["num_candidates"] == 2
    assert batch["docs"]["input_ids"].shape[0] == 4 and batch["pairs"]["input_ids"].shape[0] == 4
