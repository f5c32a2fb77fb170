"""kd's answer relevancy and answer correctness equal the ragas library's ResponseRelevancy and AnswerCorrectness
when both see the same judge outputs and the same embeddings (runs only where ragas is installed: pip install
ragas==0.4.3 'langchain-community<0.4')."""

from __future__ import annotations

import asyncio
import json
import os
import warnings

import pytest

ragas = pytest.importorskip("ragas")
os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")

EXAMPLES = [
    ("What is the default DNS policy for a Kubernetes pod?",
     ["What DNS policy does a pod use by default?", "Which DNS server does Kubernetes use?",
      "What port does DNS listen on?"], 0),
    ("What does the failureThreshold of a probe mean?",
     ["How many failed probes mark a container unhealthy?", "What is a probe failure threshold?",
      "What is the failureThreshold default?"], 0),
    ("What is a PersistentVolumeClaim?",
     ["What colour are bananas?", "Where do bananas grow?", "What is a PersistentVolumeClaim?"], 0),
    ("What is a Service?", ["What is unknown?", "What is unclear?", "Who knows?"], 1),
]


def test_same_scores_as_ragas_response_relevancy():
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from ragas.dataset_schema import SingleTurnSample
    from ragas.embeddings import LangchainEmbeddingsWrapper
    from ragas.llms import LangchainLLMWrapper
    from ragas.metrics import ResponseRelevancy
    from ragas.run_config import RunConfig

    from kd.pipeline.relevancy import Embedder, answer_relevancy

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    emb = Embedder("packaged:minilm")

    class MiniLM(Embeddings):
        def embed_documents(self, texts):
            return emb.encode(texts).tolist()

        def embed_query(self, text):
            return emb.encode([text])[0].tolist()

    class Judge:
        def __init__(self, questions, nc):
            self.reply = json.dumps({"questions": questions, "noncommittal": nc})

        def chat(self, messages, max_new_tokens=128):
            return self.reply

    kd_scores, ragas_scores = [], []
    for question, generated, nc in EXAMPLES:
        replies = [json.dumps({"question": g, "noncommittal": nc}) for g in generated]
        metric = ResponseRelevancy(llm=LangchainLLMWrapper(FakeListChatModel(responses=replies)),
                                   embeddings=LangchainEmbeddingsWrapper(MiniLM()), strictness=3)
        metric.init(RunConfig(max_retries=1, max_wait=2))
        sample = SingleTurnSample(user_input=question, response="some answer")
        ragas_scores.append(float(asyncio.run(metric.single_turn_ascore(sample))))
        kd_scores.append(answer_relevancy(question, "some answer", Judge(generated, nc), emb, k=3).score)
    assert kd_scores == pytest.approx(ragas_scores, abs=1e-5)
    assert ragas_scores[-1] == 0.0 and ragas_scores[1] > ragas_scores[2]


def _minilm():
    from langchain_core.embeddings import Embeddings

    from kd.pipeline.relevancy import Embedder

    emb = Embedder("packaged:minilm")

    class MiniLM(Embeddings):
        def embed_documents(self, texts):
            return emb.encode(texts).tolist()

        def embed_query(self, text):
            return emb.encode([text])[0].tolist()

    return emb, MiniLM()


def _classified(tp, fp, fn):
    """A classification reply in ragas's ClassificationWithReason schema (kd's parser reads it too)."""
    lists = (("TP", tp), ("FP", fp), ("FN", fn))
    return json.dumps({k: [{"statement": s, "reason": "r"} for s in v] for k, v in lists})


# question, answer, reference, answer statements, reference statements, (TP, FP, FN) statement lists
CORRECTNESS_EXAMPLES = [
    ("What does a Kubernetes Service provide?",  # fully right: TP=2, FP=0, FN=0 -> F1 = 1
     "A Service gives a set of pods one stable IP address and load-balances traffic to them.",
     "A Service exposes a set of pods behind one stable IP address and spreads traffic across them.",
     ["A Service gives a set of pods one stable IP address.", "A Service load-balances traffic to the pods."],
     ["A Service exposes a set of pods behind one stable IP address.", "A Service spreads traffic across the pods."],
     (["A Service gives a set of pods one stable IP address.", "A Service load-balances traffic to the pods."],
      [], [])),
    ("What is the default restartPolicy of a pod?",  # wrong: TP=0, FP=1, FN=1 -> F1 = 0
     "The default restartPolicy of a pod is Never.",
     "The default restartPolicy of a pod is Always.",
     ["The default restartPolicy of a pod is Never."],
     ["The default restartPolicy of a pod is Always."],
     ([], ["The default restartPolicy of a pod is Never."], ["The default restartPolicy of a pod is Always."])),
    ("What is a PersistentVolumeClaim?",  # partial: TP=1, FP=1, FN=2 -> P = 1/2, R = 1/3, F1 = 0.4
     "A PersistentVolumeClaim is a request for storage by a user. It is stored in etcd as a ConfigMap.",
     "A PersistentVolumeClaim is a user's request for storage. It can ask for a size and access modes. "
     "It binds to a PersistentVolume.",
     ["A PersistentVolumeClaim is a request for storage by a user.",
      "A PersistentVolumeClaim is stored in etcd as a ConfigMap."],
     ["A PersistentVolumeClaim is a user's request for storage.", "A PersistentVolumeClaim can ask for a size and "
      "access modes.", "A PersistentVolumeClaim binds to a PersistentVolume."],
     (["A PersistentVolumeClaim is a request for storage by a user."],
      ["A PersistentVolumeClaim is stored in etcd as a ConfigMap."],
      ["A PersistentVolumeClaim can ask for a size and access modes.",
       "A PersistentVolumeClaim binds to a PersistentVolume."])),
    ("What does the readiness probe control?",  # no TP, no statement in the answer: TP=0, FP=0, FN=2 -> F1 = 0
     "It depends on your cluster.",
     "The readiness probe decides whether a pod receives Service traffic. A failing pod is removed from the "
     "endpoints.",
     [],
     ["The readiness probe decides whether a pod receives Service traffic.",
      "A pod with a failing readiness probe is removed from the Service endpoints."],
     ([], [], ["The readiness probe decides whether a pod receives Service traffic.",
               "A pod with a failing readiness probe is removed from the Service endpoints."])),
]


def test_same_scores_as_ragas_answer_correctness():
    """kd's correctness_batch equals ragas 0.4.3 AnswerCorrectness(weights=[0.75, 0.25]) on fixed judge replies.

    ragas asks the judge (StatementGeneratorPrompt) for the response's statements, then the reference's, then
    (CorrectnessClassifier) for ``{"TP"|"FP"|"FN": [{"statement", "reason"}]}``; factuality = ragas.metrics.utils.
    fbeta_score(tp, fp, fn, beta=1.0); similarity = AnswerSimilarity (cosine of the L2-normalised embeddings of
    reference and response, threshold None); score = np.average([f1, sim], weights). kd gets the same replies (its
    parsers read ragas's schemas: ``{"statements": [...]}`` and lists of ``{"statement", "reason"}`` objects, counted
    by length) and the reference statements directly (kd extracts them once per question, before scoring).

    Definitional differences found in the ragas 0.4.3 source, none of which these examples (or a scored kd row)
    reach: (1) ragas's F-score has no epsilon: P = 0 when TP + FP = 0, R = 0 when TP + FN = 0, and 0 when
    P = R = 0; kd returns 0 when TP = 0, which is the same for every count triple; (2) when the judge finds no
    statement in either the answer or the reference, ragas skips the classification and sets F1 = 1.0, kd still
    classifies (0/0/0 -> F1 = 0); (3) for an empty answer kd scores 0 without a judge call, ragas embeds " " in its
    place and scores 0.25 * cosine (plus F1 from the judge); an empty reference gives kd similarity 0, ragas
    embeds " "; (4) an unparseable judge reply is ``score=None`` (listed) in kd and an exception / NaN in ragas;
    (5) kd rounds scores to 6 decimals. ragas's AnswerSimilarity thresholds only when ``threshold`` is set (it is
    not, inside AnswerCorrectness); neither side clips a negative cosine.
    """
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from ragas.dataset_schema import SingleTurnSample
    from ragas.embeddings import LangchainEmbeddingsWrapper
    from ragas.llms import LangchainLLMWrapper
    from ragas.metrics import AnswerCorrectness
    from ragas.metrics.utils import fbeta_score
    from ragas.run_config import RunConfig

    from kd.pipeline import correctness

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    emb, minilm = _minilm()

    class ScriptedJudge:
        """kd's judge: the answer-statement reply for a statement prompt, the classification reply otherwise."""

        def __init__(self, statements_reply, classify_reply):
            self.statements_reply, self.classify_reply = statements_reply, classify_reply
            self.calls = 0

        def chat(self, messages, max_new_tokens=128):
            self.calls += 1
            if messages[-1]["content"].startswith("Break the answer below"):
                return self.statements_reply
            return self.classify_reply

    kd_scores, ragas_scores, f1s = [], [], []
    for question, answer, reference, a_st, r_st, (tp, fp, fn) in CORRECTNESS_EXAMPLES:
        replies = [json.dumps({"statements": a_st}), json.dumps({"statements": r_st}), _classified(tp, fp, fn)]
        fake = FakeListChatModel(responses=replies)
        metric = AnswerCorrectness(llm=LangchainLLMWrapper(fake), embeddings=LangchainEmbeddingsWrapper(minilm),
                                   weights=[0.75, 0.25], beta=1.0)
        metric.init(RunConfig(max_retries=1, max_wait=2))
        sample = SingleTurnSample(user_input=question, response=answer, reference=reference)
        ragas_scores.append(float(asyncio.run(metric.single_turn_ascore(sample))))
        assert fake.i == 0, "ragas used a different number of judge calls than scripted"  # cycled back to the start

        judge = ScriptedJudge(replies[0], replies[2])
        [row] = correctness.correctness_batch([question], [answer], [reference], [r_st], judge, emb, 192,
                                              weights=(0.75, 0.25))
        assert row.status == "scored" and (row.tp, row.fp, row.fn) == (len(tp), len(fp), len(fn)) and judge.calls == 2
        assert correctness.f1_from_counts(len(tp), len(fp), len(fn)) == pytest.approx(
            fbeta_score(len(tp), len(fp), len(fn), 1.0), abs=1e-12)
        kd_scores.append(row.score)
        f1s.append(row.f1)
    assert kd_scores == pytest.approx(ragas_scores, abs=1e-5)
    assert f1s == pytest.approx([1.0, 0.0, 0.4, 0.0])
    assert ragas_scores[0] > ragas_scores[2] > max(ragas_scores[1], ragas_scores[3])
    # the F-scores agree on every small count triple, including the TP = 0 and empty corners
    for counts in [(t, f, n) for t in range(4) for f in range(4) for n in range(4)]:
        assert correctness.f1_from_counts(*counts) == pytest.approx(fbeta_score(*counts, 1.0), abs=1e-12)


def test_ragas_check_correctness_table(tmp_path, capsys):
    """``ragas_check --metric correctness`` reads the held-out files of a run, scores them with ragas and lists a
    ragas failure (unparseable judge output) apart from the mean."""
    from kd.pipeline import ragas_check

    emb, _ = _minilm()

    def write(path, data):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"step": path.stem, "data": data}))

    (question, answer, reference, a_st, r_st, (tp, fp, fn)) = CORRECTNESS_EXAMPLES[2]
    write(tmp_path / "heldout_questions.json", {"questions": [{"id": "h-1", "question": question, "topic": "storage"},
                                                              {"id": "h-2", "question": "Bad?", "topic": "storage"}]})
    write(tmp_path / "heldout_references.json", {"references": [{"id": "h-1", "reference": reference},
                                                                {"id": "h-2", "reference": "Bad reference."}]})
    write(tmp_path / "cycle_00" / "heldout_answers.json", {"answers": [{"id": "h-1", "answer": answer},
                                                                       {"id": "h-2", "answer": "Bad answer."}]})
    write(tmp_path / "cycle_00" / "heldout_scores.json", {"scores": [
        {"id": "h-1", "correctness": {"score": 0.52, "status": "scored", "tp": 1, "fp": 1, "fn": 2}},
        {"id": "h-2", "correctness": {"score": None, "status": "unparseable", "problem": "TP/FP/FN unparseable"}}]})
    manifest = {"config": {"teacher": {"model": "fake"}, "correctness": {"weights": [0.75, 0.25]}}}

    class FakeLM:
        def chat(self, messages, max_new_tokens=128):
            text = messages[-1]["content"]
            if "Bad" in text:
                return "no json here"
            if "classify" in text:
                return _classified(tp, fp, fn)
            body = text.rsplit("input:", 1)[-1]  # ragas's prompt: instruction, examples, then this input
            return json.dumps({"statements": r_st if reference[:30] in body else a_st})

    assert ragas_check.check_correctness(tmp_path, manifest, FakeLM(), emb, 8, 256) == 0
    out = capsys.readouterr().out
    assert "| cycle_00/h-1 | 0.5200 | 1/1/2 | 0.5204 | 1/1/2 | +0.0004 |" in out
    assert "mean |kd - ragas| = 0.0004 over 1 answers" in out
    assert "cycle_00/h-2: ragas failed" in out and "cycle_00/h-2: kd unparseable" in out
