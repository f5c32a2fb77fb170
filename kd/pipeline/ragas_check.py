"""Compare kd's answer relevancy (default) or answer correctness with the ragas library's on a finished run, using
the same local judge LLM (the run's teacher) and the same embeddings:
``python -m kd.pipeline.ragas_check RUN_DIR [--metric relevancy|correctness] [--limit N]``.

Needs ``pip install ragas==0.4.3 "langchain-community<0.4"`` (not a kd dependency). ragas asks the judge
``strictness`` (3) times with its own few-shot prompt, one question per call; kd asks once for 3 questions. With
a greedy local judge ragas's three calls are identical, so the two scores differ by the generated questions, not by
the formula (the formula is checked exactly in tests/pipeline/test_pipeline_ragas_agreement.py).

``--metric correctness`` scores the held-out answers (``cycle_XX/heldout_answers.json`` against the run's
``heldout_references.json``, kd's score from ``cycle_XX/heldout_scores.json``) with ragas ``AnswerCorrectness``
(the run's ``correctness.weights``). ragas asks the judge with its own few-shot prompts, three calls per answer
(response statements, reference statements, TP/FP/FN with a reason each); kd extracted the reference statements
once per question and uses shorter prompts, so differences come from the judge's statements and classification,
not the formula (checked exactly in the same test file). The table shows both sides' TP/FP/FN counts. A ragas row
that fails (unparseable judge output: an exception or NaN) is listed as failed, not averaged; so is a kd row that
was unparseable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import warnings
from pathlib import Path
from typing import Any


def _ragas_models(lm, embedder, max_new_tokens: int = 160):
    """(ragas LLM wrapper, ragas embeddings wrapper) around a kd chat model and a kd Embedder."""
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from pydantic import ConfigDict
    from ragas.embeddings import LangchainEmbeddingsWrapper
    from ragas.llms import LangchainLLMWrapper

    class LocalChat(BaseChatModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        lm: Any = None

        @property
        def _llm_type(self) -> str:
            return "kd-local"

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            roles = {"human": "user", "ai": "assistant", "system": "system"}
            msgs = [{"role": roles.get(m.type, "user"), "content": m.content} for m in messages]
            reply = self.lm.chat(msgs, max_new_tokens)
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content=reply))])

    class Emb(Embeddings):
        def embed_documents(self, texts):
            return embedder.encode(texts).tolist()

        def embed_query(self, text):
            return embedder.encode([text])[0].tolist()

    return LangchainLLMWrapper(LocalChat(lm=lm)), LangchainEmbeddingsWrapper(Emb())


def _ragas_metric(lm, embedder, max_new_tokens: int = 160):
    from ragas.metrics import ResponseRelevancy
    from ragas.run_config import RunConfig

    llm, emb = _ragas_models(lm, embedder, max_new_tokens)
    metric = ResponseRelevancy(llm=llm, embeddings=emb, strictness=3)
    metric.init(RunConfig(max_retries=1, max_wait=2))
    return metric


def _ragas_correctness_metric(lm, embedder, weights, max_new_tokens: int):
    """ragas AnswerCorrectness that also keeps the last (TP, FP, FN) counts it scored, in ``metric.counts``."""
    from ragas.metrics import AnswerCorrectness
    from ragas.run_config import RunConfig

    class CountingAnswerCorrectness(AnswerCorrectness):
        counts: Any = None

        def _compute_statement_presence(self, prediction):
            self.counts = (len(prediction.TP), len(prediction.FP), len(prediction.FN))
            return super()._compute_statement_presence(prediction)

    llm, emb = _ragas_models(lm, embedder, max_new_tokens)
    metric = CountingAnswerCorrectness(llm=llm, embeddings=emb, weights=[float(w) for w in weights], beta=1.0)
    metric.init(RunConfig(max_retries=1, max_wait=2))
    return metric


def _data(path: Path) -> dict:
    return json.loads(path.read_text())["data"]


def heldout_rows(run: Path) -> list[dict]:
    """Held-out rows of every scored cycle, in order: ``{"key", "question", "answer", "reference", "kd"}`` with
    ``kd`` the run's correctness record (``score`` None when kd could not parse the judge)."""
    questions = {q["id"]: q["question"] for q in _data(run / "heldout_questions.json")["questions"]}
    references = {r["id"]: r["reference"] for r in _data(run / "heldout_references.json")["references"]}
    rows = []
    for cdir in sorted(run.glob("cycle_*")):
        if not (cdir / "heldout_scores.json").exists() or not (cdir / "heldout_answers.json").exists():
            continue
        scores = {s["id"]: s["correctness"] for s in _data(cdir / "heldout_scores.json")["scores"]}
        for a in _data(cdir / "heldout_answers.json")["answers"]:
            if a["id"] in scores:
                rows.append({"key": f"{cdir.name}/{a['id']}", "question": questions[a["id"]], "answer": a["answer"],
                             "reference": references[a["id"]], "kd": scores[a["id"]]})
    return rows


def _fmt_counts(c) -> str:
    return "-" if c is None or None in c else "/".join(str(x) for x in c)


def check_correctness(run: Path, manifest: dict, lm, embedder, limit: int, max_new_tokens: int | None) -> int:
    from ragas.dataset_schema import SingleTurnSample

    cfg = manifest["config"]
    weights = (cfg.get("correctness") or {}).get("weights", [0.75, 0.25])
    tokens = max_new_tokens or 2 * int((cfg.get("generation") or {}).get("max_new_tokens_correctness", 192))
    rows = heldout_rows(run)[:limit]
    if not rows:
        print(f"no held-out scores in {run} (needs heldout_questions.json, heldout_references.json and "
              "cycle_XX/heldout_answers.json + heldout_scores.json)")
        return 1
    metric = _ragas_correctness_metric(lm, embedder, weights, tokens)
    print(f"answer correctness, weights {list(weights)}, judge {cfg['teacher']['model']} "
          f"(ragas max_new_tokens {tokens}), {len(rows)} held-out answers")
    print("| answer | kd | kd TP/FP/FN | ragas | ragas TP/FP/FN | diff |\n|---|---|---|---|---|---|")
    diffs, failed = [], []
    for row in rows:
        kd = row["kd"]
        kd_score = kd.get("score")
        metric.counts = None
        try:
            rs = float(asyncio.run(metric.single_turn_ascore(SingleTurnSample(
                user_input=row["question"], response=row["answer"], reference=row["reference"]))))
            problem = "NaN" if rs != rs else ""
        except Exception as e:  # unparseable judge output after ragas's retries
            rs, problem = float("nan"), f"failed: {type(e).__name__}: {str(e)[:80]}"
        if problem:
            failed.append((row["key"], "ragas " + problem))
        if kd_score is None:
            failed.append((row["key"], f"kd {kd.get('status')}: {kd.get('problem', '')}"))
        diff = None if kd_score is None or rs != rs else rs - kd_score
        if diff is not None:
            diffs.append(diff)
        print(f"| {row['key']} | {'unparseable' if kd_score is None else f'{kd_score:.4f}'} | "
              f"{_fmt_counts((kd.get('tp'), kd.get('fp'), kd.get('fn')))} | "
              f"{'NaN' if rs != rs else f'{rs:.4f}'} | {_fmt_counts(metric.counts)} | "
              f"{'n/a' if diff is None else f'{diff:+.4f}'} |", flush=True)
    if diffs:
        print(f"\nmean |kd - ragas| = {sum(abs(d) for d in diffs) / len(diffs):.4f} over {len(diffs)} answers "
              f"(mean kd - ragas = {-sum(diffs) / len(diffs):+.4f})")
    else:
        print("\nmean |kd - ragas|: no answer scored by both")
    print(f"not averaged: {len(failed)} ({len({k for k, _ in failed})} answers)")
    for key, why in failed:
        print(f"  {key}: {why}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--metric", choices=("relevancy", "correctness"), default="relevancy")
    parser.add_argument("--limit", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="judge reply length for ragas (relevancy: 160; correctness: 2 x the run's "
                             "generation.max_new_tokens_correctness, as ragas's replies carry a reason per statement)")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
    warnings.filterwarnings("ignore")
    from ragas.dataset_schema import SingleTurnSample

    from kd.pipeline.llm import LocalChatLM
    from kd.pipeline.relevancy import Embedder

    run = Path(args.run_dir)
    manifest = json.loads((run / "manifest.json").read_text())
    if args.metric == "correctness":
        teacher = manifest["config"]["teacher"]
        lm = LocalChatLM(teacher["model"], dtype=teacher.get("dtype", "auto"))
        return check_correctness(run, manifest, lm, Embedder(manifest["config"]["relevancy"]["embedding_model"]),
                                 args.limit, args.max_new_tokens)
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
    metric = _ragas_metric(lm, Embedder(manifest["config"]["relevancy"]["embedding_model"]),
                           args.max_new_tokens or 160)
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
