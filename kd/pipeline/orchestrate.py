"""The pipeline, step by step; every step goes through ``RunDir.step`` (saved before the next one starts).

Per cycle c: questions -> references (teacher) -> baseline_answers (student: base model, or cycle c-1's adapter)
-> baseline_scores (judge + embeddings) -> trainset (all pairs so far) -> finetune (LoRA, adapter saved)
-> finetuned_answers -> finetuned_scores -> summary. After the last cycle: report.json / report.md / plots.
Models are loaded for a stage and freed after it (memory logged at every stage).
"""

from __future__ import annotations

import logging
import os
import random
import signal
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from kd.pipeline import memory, prompts
from kd.pipeline.config import to_plain, validate
from kd.pipeline.knowledge import KnowledgeBase, load_knowledge_base
from kd.pipeline.relevancy import answer_relevancy, reference_similarity, summarise, to_dict
from kd.pipeline.rundir import RunDir, resume_config
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
    try:
        for cycle in range(1, int(cfg["cycles"]) + 1):
            cdir = run.cycle_dir(cycle)

            # 3a. new questions, grounded in unused passages, no repeats of earlier cycles
            def make_questions() -> dict:
                teacher = models.teacher()
                out, failures = [], []
                candidates = _select_passages(kb, topics, used_passages, seed, cycle)
                bar = _progress(range(n_q), f"cycle {cycle}: teacher questions", progress)
                it = iter(candidates)
                for _ in bar:
                    for passage in it:
                        raw = teacher.chat(prompts.question_messages(passage.text, passage.topic),
                                           int(gen["max_new_tokens_question"]))
                        q = prompts.parse_question(raw)
                        if q is None:
                            failures.append({"passage_id": passage.id, "raw": raw, "problem": "no question found"})
                            continue
                        if prompts.normalise(q) in seen_questions | {prompts.normalise(x["question"]) for x in out}:
                            failures.append({"passage_id": passage.id, "raw": raw, "problem": "repeat of an earlier question"})
                            continue
                        out.append({"id": f"c{cycle}q{len(out) + 1}", "question": q, "topic": passage.topic,
                                    "passage_id": passage.id, "passage": passage.text})
                        break
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
                refs = []
                for q in _progress(questions, f"cycle {cycle}: teacher references", progress):
                    raw = teacher.chat(prompts.reference_messages(q["question"], q["passage"]),
                                       int(gen["max_new_tokens_reference"]))
                    refs.append({"id": q["id"], "reference": prompts.parse_reference(raw)})
                return {"references": refs, "n_empty": sum(not r["reference"] for r in refs)}

            refs = run.step("references", make_references, cycle)["references"]
            after(f"cycle{cycle}.references")

            def answer(adapter: str | None, label: str) -> Callable[[], dict]:
                def fn() -> dict:
                    student = models.student(adapter)
                    outs = []
                    for q in _progress(questions, f"cycle {cycle}: student {label} answers", progress):
                        outs.append({"id": q["id"], "answer": student.chat(prompts.student_messages(q["question"]),
                                                                           int(gen["max_new_tokens_answer"]))})
                    return {"answers": outs, "adapter": adapter and os.path.relpath(adapter, run.path)}
                return fn

            def score(answers: list[dict], label: str) -> Callable[[], dict]:
                def fn() -> dict:
                    judge = models.teacher()
                    emb = models.embedder()
                    rows = []
                    for q, a, r in _progress(list(zip(questions, answers, refs)), f"cycle {cycle}: relevancy {label}",
                                             progress):
                        s = answer_relevancy(q["question"], a["answer"], judge, emb, k, int(gen["max_new_tokens_judge"]))
                        rows.append({"id": q["id"], **to_dict(s),
                                     "reference_similarity": reference_similarity(a["answer"], r["reference"], emb)})
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
            ft_scores = run.step("finetuned_scores", score(ft_answers, "fine-tuned"), cycle)
            after(f"cycle{cycle}.finetuned_scores")

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
                return {"cycle": cycle, "baseline": b, "finetuned": f, "improvement_abs": imp,
                        "improvement_pct": None if imp is None or not bm else round(100 * imp / bm, 3),
                        "train_examples": trainset["n"], "train_losses": ft["losses"], "finetune_mode": ft["mode"],
                        "trainable_params": ft["trainable_params"], "samples": samples}

            summaries.append(run.step("summary", make_summary, cycle))
            after(f"cycle{cycle}.summary")
            previous_adapter = adapter
    finally:
        models.release()

    from kd.pipeline.report import write_report

    report = write_report(run, cfg, kb, summaries, [memory.snapshot("end (models freed)")])
    run.finish()
    return {"report": report, "executed": run.executed, "skipped": run.skipped, "rebuilt": run.rebuilt,
            "run_dir": str(run.path)}
