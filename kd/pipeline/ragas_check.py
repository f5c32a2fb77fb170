"""Compare kd's answer relevancy with the ragas library's on a finished run, using the same local judge LLM and
the same embeddings: ``python -m kd.pipeline.ragas_check RUN_DIR [--limit N]``.

Needs ``pip install ragas==0.4.3 "langchain-community<0.4"`` (not a kd dependency). ragas asks the judge
``strictness`` (3) times with its own few-shot prompt, one question per call; kd asks once for 3 questions. With
a greedy local judge ragas's three calls are identical, so the two scores differ by the generated questions, not by
the formula (the formula is checked exactly in tests/pipeline/test_pipeline_ragas_agreement.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import warnings
from pathlib import Path
from typing import Any


def _ragas_metric(lm, embedder):
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from pydantic import ConfigDict
    from ragas.embeddings import LangchainEmbeddingsWrapper
    from ragas.llms import LangchainLLMWrapper
    from ragas.metrics import ResponseRelevancy
    from ragas.run_config import RunConfig

    class LocalChat(BaseChatModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        lm: Any = None

        @property
        def _llm_type(self) -> str:
            return "kd-local"

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            roles = {"human": "user", "ai": "assistant", "system": "system"}
            msgs = [{"role": roles.get(m.type, "user"), "content": m.content} for m in messages]
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.lm.chat(msgs, 160)))])

    class Emb(Embeddings):
        def embed_documents(self, texts):
            return embedder.encode(texts).tolist()

        def embed_query(self, text):
            return embedder.encode([text])[0].tolist()

    metric = ResponseRelevancy(llm=LangchainLLMWrapper(LocalChat(lm=lm)), embeddings=LangchainEmbeddingsWrapper(Emb()),
                               strictness=3)
    metric.init(RunConfig(max_retries=1, max_wait=2))
    return metric


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--limit", type=int, default=6)
    args = parser.parse_args(argv)
    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
    warnings.filterwarnings("ignore")
    from ragas.dataset_schema import SingleTurnSample

    from kd.pipeline.llm import LocalChatLM
    from kd.pipeline.relevancy import Embedder

    run = Path(args.run_dir)
    manifest = json.loads((run / "manifest.json").read_text())
    pairs = []
    for cdir in sorted(run.glob("cycle_*")):
        qs = {q["id"]: q["question"] for q in json.loads((cdir / "questions.json").read_text())["data"]["questions"]}
        for side in ("baseline", "finetuned"):
            answers = json.loads((cdir / f"{side}_answers.json").read_text())["data"]["answers"]
            scores = json.loads((cdir / f"{side}_scores.json").read_text())["data"]["scores"]
            for a, s in zip(answers, scores):
                pairs.append((f"{a['id']}/{side}", qs[a["id"]], a["answer"], s["score"]))
    pairs = pairs[: args.limit]
    lm = LocalChatLM(manifest["config"]["teacher"]["model"], dtype=manifest["config"]["teacher"].get("dtype", "auto"))
    metric = _ragas_metric(lm, Embedder(manifest["config"]["relevancy"]["embedding_model"]))
    print("| answer | kd | ragas | diff |\n|---|---|---|---|")
    diffs = []
    for key, question, answer, kd_score in pairs:
        rs = float(asyncio.run(metric.single_turn_ascore(SingleTurnSample(user_input=question, response=answer))))
        diff = None if kd_score is None or rs != rs else rs - kd_score
        if diff is not None:
            diffs.append(diff)
        print(f"| {key} | {kd_score if kd_score is not None else 'unparseable'} | {rs:.4f} | "
              f"{'n/a' if diff is None else f'{diff:+.4f}'} |", flush=True)
    if diffs:
        print(f"\nmean |kd - ragas| = {sum(abs(d) for d in diffs) / len(diffs):.4f} over {len(diffs)} answers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
