"""Every benchmark script runs: each one's ``--smoke`` mode, as a subprocess, on tiny models and data.

The smoke modes take seconds (one step or one short epoch, a handful of documents); their numbers mean nothing,
so the checks are on the shape of what the scripts print: the table has the expected rows, its numbers parse
and are finite (metrics within [0, 1]). A script that stops running, or stops printing its table, fails here
rather than the next time someone benchmarks.

The scripts that train or evaluate through kd's config get the tiny BEIR folder and the tiny random BERT (as
student and, with a fresh scoring head, as teacher) from conftest.py as Hydra overrides; the two that read SciFact
directly (index on SciFact, precision) skip when the shared SciFact zip is absent.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kd.paths import shared_dir

REPO = Path(__file__).resolve().parents[2]
HAS_SCIFACT = shared_dir() is not None and (shared_dir() / "data/scifact/scifact.zip").is_file()
needs_scifact = pytest.mark.skipif(not HAS_SCIFACT, reason="needs the shared SciFact zip (shared/data/scifact)")


def run_script(script: str, *args, cwd: Path, cache_dir: str | None = None) -> str:
    """Run ``python <script> *args`` offline with 2 torch threads and kd's cache in ``cwd`` (or ``cache_dir``);
    return its stdout."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="offline", WANDB_SILENT="true",
               KD_CACHE_DIR=cache_dir or str(cwd / "kd-cache"), OMP_NUM_THREADS="2", OMP_WAIT_POLICY="PASSIVE",
               TOKENIZERS_PARALLELISM="false")
    done = subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{script} {' '.join(map(str, args))} failed:\n{done.stderr[-4000:]}"
    return done.stdout


def table(stdout: str, header_start: str) -> dict[str, list[str]]:
    """The Markdown table whose header row starts with ``| <header_start>``: first cell -> the other cells."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header_start}"))
    rows: dict[str, list[str]] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def number(cell: str) -> float:
    """A table cell as a finite float ('0.97x' -> 0.97)."""
    value = float(cell.removesuffix("x"))
    assert math.isfinite(value), cell
    return value


def assert_metrics(cells: list[str]) -> None:
    for cell in cells:
        assert 0.0 <= number(cell) <= 1.0, cells


# Every benchmark script and the smoke test(s) below that run it: a new script needs a --smoke mode and a test here.
SMOKE_TESTS = {
    "benchmarks/benchmark_throughput.py": ["test_benchmark_throughput_smoke"],
    "benchmarks/benchmark_memory.py": ["test_benchmark_memory_smoke"],
    "scripts/benchmark_quality.py": ["test_benchmark_quality_smoke"],
    "scripts/benchmark_scifact.py": ["test_benchmark_scifact_smoke"],
    "scripts/benchmark_ddp.py": ["test_benchmark_ddp_smoke"],
    "scripts/benchmark_index.py": ["test_benchmark_index_synthetic_smoke", "test_benchmark_index_scifact_smoke"],
    "scripts/benchmark_precision.py": ["test_benchmark_precision_smoke"],
    "scripts/benchmark_teachers.py": ["test_benchmark_teachers_smoke"],
    "scripts/benchmark_pipeline_teachers.py": ["test_benchmark_pipeline_teachers_smoke"],
    "scripts/benchmark_lora_recipes.py": ["test_benchmark_lora_recipes_smoke"],
}


def test_every_benchmark_script_has_a_smoke_test():
    scripts = sorted(str(p.relative_to(REPO)) for pattern in ("benchmarks/*.py", "scripts/benchmark_*.py")
                     for p in REPO.glob(pattern))
    assert scripts == sorted(SMOKE_TESTS), "add a --smoke mode and a smoke test for new benchmark scripts"
    for script, tests in SMOKE_TESTS.items():
        assert "--smoke" in (REPO / script).read_text(), script
        assert all(callable(globals().get(name)) for name in tests), tests


def kd_overrides(tiny_model_dir, tiny_beir_dir) -> list[str]:
    return [f"data.path={tiny_beir_dir}", f"student.name_or_path={tiny_model_dir}",
            f"teacher.name_or_path={tiny_model_dir}"]


def test_benchmark_throughput_smoke(tiny_model_dir, tiny_beir_dir, tmp_path):
    pytest.importorskip("sentence_transformers")
    out = run_script("benchmarks/benchmark_throughput.py", "--smoke", "--data", "beir",
                     *kd_overrides(tiny_model_dir, tiny_beir_dir), cwd=tmp_path)
    training = table(out, "trainer")
    assert list(training) == ["kd (pre-tokenised, documents in length groups of 16)",
                              "kd (plain: tokenise per batch, pad to the longest)",
                              "ST SentenceTransformerTrainer + DistillKLDivLoss"]
    for cells in training.values():
        assert all(number(c) > 0 for c in cells[:6]), cells
    assert training["ST SentenceTransformerTrainer + DistillKLDivLoss"][3] == "1.00x"
    cache = table(out, "teacher scores")
    assert list(cache) == ["kd with the score cache (empty at start)", "kd recomputing the teacher every step"]
    for cells in cache.values():
        assert len(cells) == 2  # two epochs
        for cell in cells:
            assert all(number(v) >= 0 for v in re.findall(r"[\d.]+", cell)), cell
    evaluation = table(out, "stage")
    assert len(evaluation) == 4 and all(number(cells[0].split(" / ")[0]) >= 0 for cells in evaluation.values())
    last = out.strip().splitlines()[-1]
    match = re.fullmatch(r"kd vs ST \(wall\): (\d+\.\d\d)x at max_length 32", last)
    assert match, last
    kd_speed = number(training["kd (pre-tokenised, documents in length groups of 16)"][3])
    assert number(match.group(1)) == pytest.approx(kd_speed, abs=0.011)


def test_benchmark_memory_smoke(tiny_model_dir, tmp_path):
    out = run_script("benchmarks/benchmark_memory.py", "--smoke", "--student", tiny_model_dir, cwd=tmp_path)
    rows = table(out, "batch (queries)")
    assert list(rows) == ["2"]
    texts, *cells = rows["2"]
    assert texts == "6" and len(cells) == 6
    assert all(number(c) >= 0 for c in cells[:3]) and all(number(c) > 0 for c in cells[3:]), cells


def test_benchmark_quality_smoke(tiny_model_dir, tiny_beir_dir, tmp_path):
    pytest.importorskip("sentence_transformers")
    out = run_script("scripts/benchmark_quality.py", "--smoke", "--data", "beir", "--out", tmp_path / "out",
                     *kd_overrides(tiny_model_dir, tiny_beir_dir), cwd=tmp_path)
    rows = table(out, "model")
    assert len(rows) == 8, list(rows)
    assert any(name.startswith("kd three-term loss") for name in rows)
    assert any(name.startswith("ST MarginMSELoss") for name in rows)
    assert any(name.startswith("BM25") for name in rows)
    for name, cells in rows.items():
        assert_metrics(cells[:4])
        if name.startswith(("kd ", "ST ")):
            assert number(cells[4]) >= 0  # train seconds
    assert sorted(p.stem for p in (tmp_path / "out" / "rows").iterdir()) == sorted(
        ["untrained", "bm25", "kd_full", "kd_contrastive", "st_kldiv", "st_marginmse", "kd_kl", "teacher_rerank_bm25"])


def test_benchmark_scifact_smoke(tiny_model_dir, tiny_beir_dir, tmp_path):
    out = run_script("scripts/benchmark_scifact.py", "--smoke", "data=beir",
                     *kd_overrides(tiny_model_dir, tiny_beir_dir), cwd=tmp_path)
    rows = table(out.split("## SciFact")[1], "model")
    assert [name[:3] for name in rows] == ["(a)", "(b)", "(c)"]
    for cells in rows.values():
        assert len(cells) == 4
        assert_metrics(cells)
    assert re.search(r"teacher rerank \d+, total \d+", out)


def test_benchmark_ddp_smoke(tiny_model_dir, tiny_beir_dir, tmp_path):
    out = run_script("scripts/benchmark_ddp.py", "--smoke", "--", "data=beir",
                     *kd_overrides(tiny_model_dir, tiny_beir_dir), cwd=tmp_path)
    rows = table(out, "processes")
    assert list(rows) == ["1", "2"]
    steps = {n: int(cells[0]) for n, cells in rows.items()}
    assert steps["1"] > steps["2"] > 0  # two processes split each epoch's batches
    for cells in rows.values():
        assert all(number(c) >= 0 for c in cells[1:7]), cells
        assert_metrics(cells[7:])
    assert rows["1"][5] == "1.00x"


def test_benchmark_index_synthetic_smoke(tmp_path):
    out = run_script("scripts/benchmark_index.py", "synthetic", "--smoke", cwd=tmp_path)
    rows = table(out, "index")
    assert list(rows) == ["flat", "ivf_flat", "ivf_pq", "hnsw"]
    for kind, cells in rows.items():
        build_s, search_s, qps, memory = map(number, cells[1:5])
        assert build_s >= 0 and search_s >= 0 and qps > 0 and memory > 0
        assert_metrics(cells[5:7])
    assert rows["flat"][5:7] == ["1.0000", "1.0000"]


@needs_scifact
def test_benchmark_index_scifact_smoke(tmp_path):
    out = run_script("scripts/benchmark_index.py", "scifact", "--smoke", "--kinds", "flat,ivf_flat,hnsw", cwd=tmp_path)
    assert re.search(r"SciFact: 300 docs, \d+ judged test claims, encoded at [\d.]+ docs/s", out)
    rows = table(out, "index")
    assert list(rows) == ["flat", "ivf_flat", "hnsw"]
    for cells in rows.values():
        assert_metrics(cells[5:8])  # recall@10, recall@100, nDCG@10
    assert rows["flat"][5:7] == ["1.0000", "1.0000"] and number(rows["flat"][7]) > 0


@needs_scifact
def test_benchmark_precision_smoke(tiny_model_dir, tmp_path):
    out = run_script("scripts/benchmark_precision.py", "--smoke", "--teacher", tiny_model_dir,
                     "--student", tiny_model_dir, cwd=tmp_path)
    teacher = table(out, "teacher precision")
    assert list(teacher) == ["fp32", "bf16"]
    assert all(cells[0] == "yes" for cells in teacher.values()), teacher
    assert teacher["fp32"][2] == "1.00x" and number(teacher["fp32"][4]) == 0.0
    assert number(teacher["bf16"][1]) > 0 and 0 <= number(teacher["bf16"][4]) < 0.1  # bf16 scores stay close
    student = table(out, "student precision")
    assert list(student) == ["32-true"] and student["32-true"][:2] == ["yes", "32-true"]
    assert all(number(c) > 0 for c in student["32-true"][2:]), student


def test_benchmark_teachers_smoke(tmp_path):
    pytest.importorskip("sentence_transformers")
    out = run_script("scripts/benchmark_teachers.py", "--smoke", "--out", tmp_path / "out", cwd=tmp_path)
    rows = table(out, "row")
    assert list(rows) == ["BM25 (bm25s)", "tiny model, frozen", "fusion BM25 + MiniLM (dev-chosen)",
                          "untrained student (all-MiniLM-L6-v2)",
                          "kd contrastive-only (InfoNCE, in-batch + mined negatives)",
                          "kd three-term (1·KL + 1·InfoNCE + 0.1·hinge)", "kd Margin-MSE + InfoNCE",
                          "ST MultipleNegativesRankingLoss (same negatives, no teacher)"]
    for cells in rows.values():
        assert_metrics(cells[:4])
    temperature = re.search(r"calibrated teacher temperature ([\d.e-]+)", out)
    assert temperature and number(temperature.group(1)) > 0


def smollm2_cache_or_skip() -> str:
    """kd's cache folder holding the converted SmolLM2 (converted here if needed); a missing package skips."""
    try:
        from kd.pipeline.models import cache_dir, packaged_llm_dir

        packaged_llm_dir("smollm2")
    except Exception as exc:  # noqa: BLE001 - a missing package is a skip, with the install command
        pytest.skip(str(exc))
    return str(cache_dir())


def test_benchmark_pipeline_teachers_smoke(tmp_path):
    # the converted SmolLM2 lives in the user's kd cache, not in tmp_path
    out = run_script("scripts/benchmark_pipeline_teachers.py", "--smoke", "--threads", "2", cwd=tmp_path,
                     cache_dir=smollm2_cache_or_skip())
    timing = table(out, "teacher")
    assert list(timing) == ["packaged:smollm2"]
    load_s, q_s, r_s, parsed = timing["packaged:smollm2"][:4]
    assert number(load_s) > 0 and number(q_s) > 0 and number(r_s) > 0 and parsed.endswith("/2")
    assert out.count("| pods: ") + out.count("| services: ") == 2


def test_benchmark_lora_recipes_smoke(tmp_path):
    out = run_script("scripts/benchmark_lora_recipes.py", "--smoke", "--threads", "2", cwd=tmp_path,
                     cache_dir=smollm2_cache_or_skip())
    rows = table(out, "recipe")
    assert len(rows) == 2
    one, two = rows.values()
    # 2 pairs, batch 2: one step per epoch; the NLL of the training answers falls more with the second epoch
    assert one[1] == "1" and two[1] == "2"
    change = [float(r[4].split("(")[1].rstrip(")")) for r in (one, two)]
    assert change[1] < change[0] < 0
