"""The pipeline, step by step; every step goes through ``RunDir.step`` (saved before the next one starts).

Before cycle 1 (when ``eval.heldout_per_topic`` > 0): heldout_questions -> heldout_references (teacher; their
passages are reserved, never used for training) -> cycle 0: heldout_answers (base student) -> heldout_scores
(relevancy + correctness). Per cycle c: questions (near-duplicates of held-out questions rejected) -> references
(teacher) -> baseline_answers (student: base model, or cycle c-1's adapter) -> baseline_scores (judge + embeddings)
-> trainset (all pairs so far) -> finetune (LoRA, adapter saved) -> finetuned_answers -> heldout_answers ->
finetuned_scores (the in-cycle re-scoring of the questions just trained on) -> heldout_scores -> summary.
After the last cycle: report.json / report.md / plots.
Models are loaded for a stage and freed after it (memory logged at every stage).
"""

from __future__ import annotations

import logging
import os
import random
import signal
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from kd.pipeline import correctness, memory, prompts
from kd.pipeline.chat import chat_many
from kd.pipeline.config import to_plain, validate
from kd.pipeline.heldout import NearDuplicateFilter, make_heldout_questions
from kd.pipeline.knowledge import KnowledgeBase, load_knowledge_base
from kd.pipeline.relevancy import answer_relevancy_batch, reference_similarity, summarise, to_dict
from kd.pipeline.rundir import RunDir, resume_config
from kd.pipeline.stats import mean_ci, paired_diff_ci
from kd.pipeline.trainset import build_trainset

log = logging.getLogger(__name__)


class InjectedCrash(RuntimeError):
    """Raised by the ``debug.crash_after`` hook (mode ``raise``)."""


def _progress(iterable, desc: str, enabled: bool, total: int | None = None):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False)


class _Models:
    """Loads the teacher / student / embedder for a stage and frees the previous one."""

    def __init__(self, cfg: Mapping, mem_log: list):
        self.cfg = cfg
        self.mem_log = mem_log
        self.current: tuple[str, Any] | None = None
        self._embedder = None

    def _switch(self, key: str, factory: Callable[[], Any]) -> Any:
        if self.current and self.current[0] == key:
            return self.current[1]
        self.release()
        self.mem_log.append(memory.snapshot(f"before load {key}"))
        obj = factory()
        if hasattr(obj, "batch_size"):
            obj.batch_size = int(self.cfg["generation"].get("batch_size", 8))
        self.current = (key, obj)
        self.mem_log.append(memory.snapshot(f"loaded {key}"))
        return obj

    def release(self) -> None:
        if self.current:
            key, obj = self.current
            self.current = None
            close = getattr(obj, "close", None)
            if close:
                close()
            del obj
            memory.free_memory()
            self.mem_log.append(memory.snapshot(f"freed {key}"))

    def teacher(self):
        from kd.pipeline.teacher import make_teacher

        return self._switch("teacher", lambda: make_teacher(self.cfg["teacher"], seed=int(self.cfg["seed"])))

    def student(self, adapter: str | None):
        from kd.pipeline.llm import LocalChatLM

        s = self.cfg["student"]
        label = "base" if not adapter else f"{Path(adapter).parent.name}/{Path(adapter).name}"
        return self._switch(f"student[{label}]",
                            lambda: LocalChatLM(s["model"], dtype=s.get("dtype", "float32"),
                                                device=s.get("device", "auto"), adapter=adapter))

    def embedder(self):
        if self._embedder is None:
            from kd.pipeline.relevancy import Embedder

            self._embedder = Embedder(self.cfg["relevancy"]["embedding_model"])
        return self._embedder


def _crash_hook(cfg: Mapping, key: str) -> None:
    debug = cfg.get("debug") or {}
    if debug.get("crash_after") == key:
        log.error("debug.crash_after=%s: crashing now (fault injection)", key)
        if debug.get("crash_mode", "sigkill") == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise InjectedCrash(f"injected crash after {key}")


def _select_passages(kb: KnowledgeBase, topics, used: set[str], seed: int, cycle: int) -> list:
    """Unused passages, round-robin over topics, each topic's order shuffled by (seed, cycle)."""
    rng = random.Random(seed * 1_000_003 + cycle)
    groups = kb.by_topic()
    queues = []
    for t in topics:
        ps = [p for p in groups.get(t, []) if p.id not in used]
        rng.shuffle(ps)
        queues.append(ps)
    order = []
    while any(queues):
        for q in queues:
            if q:
                order.append(q.pop(0))
    return order


def run_pipeline(cfg_in: Any, on_step: Callable[[str], None] | None = None,
                 explicit_keys: Iterable[str] | None = None) -> dict:
    """Run (or resume) the pipeline described by ``cfg_in``; returns the report plus executed/skipped steps.

    ``explicit_keys``: the keys the user set (``kd-pipeline``'s command line). When given and ``resume`` is true,
    every other key comes from the run's saved config (``rundir.resume_config``); None: ``cfg_in`` as it is."""
    cfg = to_plain(cfg_in)
    if explicit_keys is not None and cfg.get("resume"):
        cfg = resume_config(cfg, explicit_keys)
    validate(cfg)
    if not cfg.get("threads"):
        return _run(cfg, on_step)
    # e.g. threads=1 on a CPU shared with other jobs: oversubscribed threads slow torch down a lot. The thread
    # count can change low-order float bits, so resume a run with the thread count it started with.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(cfg["threads"]))
    try:
        return _run(cfg, on_step)
    finally:
        torch.set_num_threads(before)


def _run(cfg: dict, on_step: Callable[[str], None] | None) -> dict:
    mem_log: list = [memory.snapshot("start")]
    run = RunDir(cfg["run_dir"], cfg, resume=bool(cfg.get("resume", False)), mem_log=mem_log)
    progress = bool(cfg.get("progress", True))

    def bar(label: str) -> str | None:
        """The progress bar's label, or None (no bar) when ``progress=false``."""
        return label if progress else None
    models = _Models(cfg, mem_log)
    gen = cfg["generation"]
    seed = int(cfg["seed"])
    topics = list(cfg["topics"])
    k = int(cfg["relevancy"]["k"])
    threshold = float(cfg["relevancy"]["threshold"])
    n_q = int(cfg["questions_per_cycle"])

    def after(key: str) -> None:
        if on_step:
            on_step(key)
        _crash_hook(cfg, key)

    kbcfg = cfg["kb"]
    kb_json = run.step("knowledge_base", lambda: load_knowledge_base(
        str(kbcfg["source"]), topics, int(kbcfg.get("max_chars", 800)), int(kbcfg.get("min_chars", 120)),
        kbcfg.get("aliases")).to_json())
    kb = KnowledgeBase.from_json(kb_json)
    after("knowledge_base")

    all_pairs: list[dict] = []
    seen_questions: set[str] = set()
    used_passages: set[str] = set()
    summaries = []
    previous_adapter: str | None = None
    ev = cfg.get("eval") or {}
    per_topic = int(ev.get("heldout_per_topic", 0) or 0)
    resamples = int(ev.get("bootstrap_resamples", 2000))
    corr_tokens = int(gen.get("max_new_tokens_correctness", 192))
    weights = tuple((cfg.get("correctness") or {}).get("weights", correctness.DEFAULT_WEIGHTS))
    heldout: dict | None = None
    dup_filter: NearDuplicateFilter | None = None

    def score_heldout(answers: list[dict], label: str) -> Callable[[], dict]:
        def fn() -> dict:
            judge = models.teacher()
            emb = models.embedder()
            qs = [q["question"] for q in heldout["questions"]]
            ans = [a["answer"] for a in answers]
            refs = heldout["references"]
            rel = answer_relevancy_batch(qs, ans, judge, emb, k, int(gen["max_new_tokens_judge"]))
            cor = correctness.correctness_batch(qs, ans, [r["reference"] for r in refs],
                                                [r["statements"] for r in refs], judge, emb, corr_tokens, weights)
            rows = [{"id": q["id"], "topic": q["topic"], "answer": a, "relevancy": to_dict(r),
                     "correctness": correctness.to_dict(c)} for q, a, r, c in zip(heldout["questions"], ans, rel, cor)]
            return {"scores": rows, "label": label}
        return fn

    def answer_heldout(adapter: str | None, label: str) -> Callable[[], dict]:
        def fn() -> dict:
            student = models.student(adapter)
            replies = chat_many(student, [prompts.student_messages(q["question"]) for q in heldout["questions"]],
                                int(gen["max_new_tokens_answer"]), desc=bar(f"held-out: student {label}"))
            return {"answers": [{"id": q["id"], "answer": a} for q, a in zip(heldout["questions"], replies)],
                    "adapter": adapter and os.path.relpath(adapter, run.path)}
        return fn

    try:
        if per_topic:
            def make_heldout() -> dict:
                return make_heldout_questions(kb, topics, per_topic, seed, models.teacher(),
                                              int(gen["max_new_tokens_question"]))

            hq = run.step("heldout_questions", make_heldout)
            after("heldout_questions")

            def make_heldout_references() -> dict:
                teacher = models.teacher()
                qs = hq["questions"]
                replies = chat_many(teacher, [prompts.reference_messages(q["question"], q["passage"]) for q in qs],
                                    int(gen["max_new_tokens_reference"]), desc=bar("held-out: teacher references"))
                refs = [prompts.parse_reference(r) for r in replies]
                stm = correctness.reference_statements_batch([q["question"] for q in qs], refs, teacher, corr_tokens)
                rows = [{"id": q["id"], "reference": r, "statements": s["statements"], "statements_raw": s["raw"]}
                        for q, r, s in zip(qs, refs, stm)]
                return {"references": rows, "n_empty": sum(not r for r in refs),
                        "n_unparseable_statements": sum(s["statements"] is None for s in stm)}

            href = run.step("heldout_references", make_heldout_references)
            after("heldout_references")
            heldout = {"questions": hq["questions"], "references": href["references"]}
            used_passages |= {q["passage_id"] for q in hq["questions"]}  # reserved: never a training passage
            dup_filter = NearDuplicateFilter(hq["questions"], models.embedder(), float(ev.get("near_duplicate_cosine", 0.9)))
            h_answers = run.step("heldout_answers", answer_heldout(None, "base"), 0)["answers"]
            after("cycle0.heldout_answers")
            heldout_rows = {0: run.step("heldout_scores", score_heldout(h_answers, "base"), 0)["scores"]}
            after("cycle0.heldout_scores")

        for cycle in range(1, int(cfg["cycles"]) + 1):
            cdir = run.cycle_dir(cycle)

            # 3a. new questions, grounded in unused passages, no repeats of earlier cycles
            def make_questions() -> dict:
                teacher = models.teacher()
                out, failures = [], []
                candidates = _select_passages(kb, topics, used_passages, seed, cycle)
                pos = 0
                while len(out) < n_q and pos < len(candidates):
                    batch = candidates[pos:pos + (n_q - len(out)) + 1]
                    pos += len(batch)
                    replies = chat_many(teacher, [prompts.question_messages(p.text, p.topic) for p in batch],
                                        int(gen["max_new_tokens_question"]),
                                        desc=bar(f"cycle {cycle}: teacher questions"))
                    for passage, raw in zip(batch, replies):
                        if len(out) >= n_q:
                            break
                        q = prompts.parse_question(raw)
                        problem = None
                        if q is None:
                            problem = "no question found"
                        elif prompts.normalise(q) in seen_questions | {prompts.normalise(x["question"]) for x in out}:
                            problem = "repeat of an earlier question"
                        elif dup_filter is not None:
                            problem = dup_filter.problem(q)
                        if problem:
                            failures.append({"passage_id": passage.id, "raw": raw, "problem": problem})
                            continue
                        out.append({"id": f"c{cycle}q{len(out) + 1}", "question": q, "topic": passage.topic,
                                    "passage_id": passage.id, "passage": passage.text})
                if len(out) < n_q:
                    raise RuntimeError(f"cycle {cycle}: the teacher produced {len(out)} usable new questions of {n_q} "
                                       f"(knowledge base exhausted or replies unparseable: {failures[-3:]})")
                return {"questions": out, "rejected": failures}

            qdata = run.step("questions", make_questions, cycle)
            questions = qdata["questions"]
            after(f"cycle{cycle}.questions")

            # 3b. reference answers from the passage
            def make_references() -> dict:
                teacher = models.teacher()
                replies = chat_many(teacher, [prompts.reference_messages(q["question"], q["passage"]) for q in questions],
                                    int(gen["max_new_tokens_reference"]),
                                    desc=bar(f"cycle {cycle}: teacher references"))
                refs = [{"id": q["id"], "reference": prompts.parse_reference(raw)} for q, raw in zip(questions, replies)]
                return {"references": refs, "n_empty": sum(not r["reference"] for r in refs)}

            refs = run.step("references", make_references, cycle)["references"]
            after(f"cycle{cycle}.references")

            def answer(adapter: str | None, label: str) -> Callable[[], dict]:
                def fn() -> dict:
                    student = models.student(adapter)
                    replies = chat_many(student, [prompts.student_messages(q["question"]) for q in questions],
                                        int(gen["max_new_tokens_answer"]),
                                        desc=bar(f"cycle {cycle}: student {label} answers"))
                    outs = [{"id": q["id"], "answer": a} for q, a in zip(questions, replies)]
                    return {"answers": outs, "adapter": adapter and os.path.relpath(adapter, run.path)}
                return fn

            def score(answers: list[dict], label: str) -> Callable[[], dict]:
                def fn() -> dict:
                    judge = models.teacher()
                    emb = models.embedder()
                    scores = answer_relevancy_batch([q["question"] for q in questions], [a["answer"] for a in answers],
                                                    judge, emb, k, int(gen["max_new_tokens_judge"]))
                    rows = [{"id": q["id"], **to_dict(s), "reference_similarity": reference_similarity(a["answer"],
                                                                                                        r["reference"], emb)}
                            for q, a, r, s in zip(questions, answers, refs, scores)]
                    return {"scores": rows, "summary": summarise(rows, threshold)}
                return fn

            # 4. baseline answers (previous cycle's fine-tuned student from cycle 2 on)
            base_answers = run.step("baseline_answers", answer(previous_adapter, "baseline"), cycle)["answers"]
            after(f"cycle{cycle}.baseline_answers")
            # 5. relevancy of the baseline
            base_scores = run.step("baseline_scores", score(base_answers, "baseline"), cycle)
            after(f"cycle{cycle}.baseline_scores")

            # 6. training set: all pairs so far
            for q, r in zip(questions, refs):
                all_pairs.append({"id": q["id"], "question": q["question"], "reference": r["reference"], "cycle": cycle})
                seen_questions.add(prompts.normalise(q["question"]))
                used_passages.add(q["passage_id"])
            trainset = run.step("trainset", lambda: build_trainset(all_pairs), cycle)
            after(f"cycle{cycle}.trainset")

            # 7. LoRA fine-tune; the adapter folder is renamed into place before finetune.json is written
            adapter_dir = cdir / "adapter"
            if run.step_path("finetune", cycle).is_file() and not (adapter_dir / "adapter_config.json").is_file():
                log.warning("cycle %d: finetune.json exists but the adapter is missing: fine-tuning again", cycle)
                os.replace(run.step_path("finetune", cycle), run.step_path("finetune", cycle).with_suffix(".json.corrupt"))

            def do_finetune() -> dict:
                from kd.pipeline.finetune import finetune

                models.release()
                return finetune(cfg["student"]["model"], trainset["rows"], cfg["finetune"], seed + cycle, adapter_dir,
                                previous_adapter, progress)

            ft = run.step("finetune", do_finetune, cycle)
            after(f"cycle{cycle}.finetune")
            adapter = str(adapter_dir)

            # 8. fine-tuned student on the same questions, scored
            ft_answers = run.step("finetuned_answers", answer(adapter, "fine-tuned"), cycle)["answers"]
            after(f"cycle{cycle}.finetuned_answers")
            if heldout is not None:
                h_answers = run.step("heldout_answers", answer_heldout(adapter, f"cycle {cycle}"), cycle)["answers"]
                after(f"cycle{cycle}.heldout_answers")
            ft_scores = run.step("finetuned_scores", score(ft_answers, "fine-tuned"), cycle)
            after(f"cycle{cycle}.finetuned_scores")
            if heldout is not None:
                heldout_rows[cycle] = run.step("heldout_scores", score_heldout(h_answers, f"cycle {cycle}"),
                                               cycle)["scores"]
                after(f"cycle{cycle}.heldout_scores")

            def make_summary() -> dict:
                b, f = base_scores["summary"], ft_scores["summary"]
                bm, fm = b["mean_unparseable_as_zero"], f["mean_unparseable_as_zero"]
                imp = None if bm is None or fm is None else round(fm - bm, 6)
                samples = []
                for q, r, ba, bs, fa, fs in zip(questions, refs, base_answers, base_scores["scores"], ft_answers,
                                                ft_scores["scores"]):
                    samples.append({"id": q["id"], "topic": q["topic"], "question": q["question"],
                                    "reference": r["reference"], "baseline_answer": ba["answer"],
                                    "baseline_score": bs["score"], "baseline_status": bs["status"],
                                    "finetuned_answer": fa["answer"], "finetuned_score": fs["score"],
                                    "finetuned_status": fs["status"],
                                    "baseline_reference_similarity": bs.get("reference_similarity"),
                                    "finetuned_reference_similarity": fs.get("reference_similarity")})
                rel_b = [x["score"] or 0.0 for x in base_scores["scores"]]
                rel_f = [x["score"] or 0.0 for x in ft_scores["scores"]]
                out = {"cycle": cycle, "baseline": b, "finetuned": f, "improvement_abs": imp,
                        "improvement_ci95": paired_diff_ci(rel_f, rel_b, resamples, seed=seed + cycle)["ci95"],
                        "training_questions": "re-scored on the questions just trained on (memorisation check, "
                                              "not a measure of learning; see heldout)",
                        "improvement_pct": None if imp is None or not bm else round(100 * imp / bm, 3),
                        "train_examples": trainset["n"], "train_losses": ft["losses"], "finetune_mode": ft["mode"],
                        "trainable_params": ft["trainable_params"], "samples": samples}
                if heldout is not None:
                    out["heldout"] = heldout_block(heldout_rows[cycle], heldout_rows[0], resamples, seed + cycle)
                return out

            summaries.append(run.step("summary", make_summary, cycle))
            after(f"cycle{cycle}.summary")
            previous_adapter = adapter
    finally:
        models.release()

    from kd.pipeline.report import write_report

    heldout_report = None
    if heldout is not None:
        heldout_report = {"n_questions": len(heldout["questions"]), "per_topic": per_topic,
                          "near_duplicate_cosine": float(ev.get("near_duplicate_cosine", 0.9)),
                          "baseline": heldout_block(heldout_rows[0], None, resamples, seed),
                          "samples": heldout_samples(heldout, heldout_rows)}
    report = write_report(run, cfg, kb, summaries, [memory.snapshot("end (models freed)")], heldout_report)
    run.finish()
    return {"report": report, "executed": run.executed, "skipped": run.skipped, "rebuilt": run.rebuilt,
            "run_dir": str(run.path)}


def _values(rows: list[dict], metric: str) -> list[float]:
    """Per-question scores of ``metric``; an unparseable judge reply counts as 0 (a failure, never NaN)."""
    return [float(r[metric]["score"]) if r[metric]["score"] is not None else 0.0 for r in rows]


def heldout_block(rows: list[dict], base_rows: list[dict] | None, resamples: int, seed: int) -> dict:
    """Means with bootstrap 95 % intervals on the held-out set; with ``base_rows`` (cycle 0) the paired interval of
    the change since the base student."""
    block: dict = {}
    for metric in ("relevancy", "correctness"):
        block[metric] = mean_ci(_values(rows, metric), resamples, seed=seed)
    block["failures"] = [{"id": r["id"], "metric": m, "status": r[m]["status"], "problem": r[m].get("problem", "")}
                         for r in rows for m in ("relevancy", "correctness") if r[m]["status"] == "unparseable"]
    if base_rows is not None:
        for metric in ("relevancy", "correctness"):
            diff = paired_diff_ci(_values(rows, metric), _values(base_rows, metric), resamples, seed=seed)
            block[f"{metric}_gain"] = diff["mean"]
            block[f"{metric}_gain_ci95"] = diff["ci95"]
    return block


def heldout_samples(heldout: dict, rows_by_cycle: dict[int, list[dict]], n: int = 6) -> list[dict]:
    """The first ``n`` held-out questions with the reference and each cycle's answer score."""
    out = []
    for i, q in enumerate(heldout["questions"][:n]):
        out.append({"id": q["id"], "topic": q["topic"], "question": q["question"],
                    "reference": heldout["references"][i]["reference"],
                    "by_cycle": {str(c): {"answer": rows[i]["answer"], "correctness": rows[i]["correctness"]["score"],
                                          "relevancy": rows[i]["relevancy"]["score"]}
                                 for c, rows in sorted(rows_by_cycle.items())}})
    return out
