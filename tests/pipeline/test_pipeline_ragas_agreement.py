"""kd's answer relevancy equals the ragas library's ResponseRelevancy when both see the same judge outputs and the
same embeddings (runs only where ragas is installed: pip install ragas==0.4.3 'langchain-community<0.4')."""

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
