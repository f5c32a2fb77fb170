import torch

from kd.retrieval.models.bi_encoder import BiEncoder
from kd.retrieval.teachers.bi_encoder import BiEncoderTeacher

DOCS = ["a small cat sleeps", "stock markets fell sharply", "the cat chased a mouse"]


def test_bi_encoder_teacher_scores_are_cosines_and_corpus_vectors_are_cached(tiny_model_dir, tmp_path):
    teacher = BiEncoderTeacher(str(tiny_model_dir), max_length=32, cache_dir=tmp_path).index(DOCS).freeze()
    encoder = BiEncoder(str(tiny_model_dir), max_length=32)
    expected = encoder.encode(["cat"]) @ encoder.encode(DOCS).T
    assert torch.allclose(teacher.corpus_scores(["cat"]), expected, atol=1e-5)
    assert torch.allclose(teacher.score(["cat"] * 3, DOCS), expected[0], atol=1e-5)
    assert torch.allclose(teacher.score(["cat"], ["not in the corpus"]),
                          encoder.encode(["cat"]) @ encoder.encode(["not in the corpus"]).T, atol=1e-5)

    again = BiEncoderTeacher(str(tiny_model_dir), max_length=32, cache_dir=tmp_path)
    again._encode = lambda texts: (_ for _ in ()).throw(AssertionError(f"re-encoded {len(texts)} texts"))
    again.index(DOCS)  # every document vector comes from the cache file
    assert torch.allclose(again.doc_vectors, teacher.doc_vectors)
