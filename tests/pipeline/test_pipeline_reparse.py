"""``python -m kd.pipeline.reparse RUN``: stored held-out judge replies re-scored with the current parser."""

from __future__ import annotations

import json

import pytest

from kd.pipeline import correctness as C
from kd.pipeline import reparse

COPIED = json.dumps({"TP": ["A PVC binds a volume."], "FP": ["The sun is a star.", "The sun is powered by nuclear "
                     "fission."], "FN": ["The sun is powered by nuclear fusion."]})
TWO_OBJECTS = '{"TP": ["a"], "FP": [], "FN": []}\n{"TP": [], "FP": ["a"], "FN": ["b"]}'
PLAIN = json.dumps({"TP": [], "FP": ["a"], "FN": ["b"]})


def row(score, status, raw, similarity=0.8):
    return {"id": "h", "correctness": {"score": score, "status": status, "similarity": similarity,
                                       "judge_raw": ['{"statements": ["a"]}', raw] if raw else ['{"statem']}}


def write_cycle(run, cycle, rows):
    folder = run / f"cycle_{cycle:02d}"
    folder.mkdir(parents=True)
    (folder / "heldout_scores.json").write_text(json.dumps({"cycle": cycle, "data": {"scores": rows}}))


def test_reparse_counts_what_the_old_parser_missed_and_gives_paired_intervals(tmp_path, capsys):
    # cycle 0 as an old parser stored it: a few-shot copy counted (TP 1, FP 2, FN 1) and two objects unparseable
    old_copied = C.combine(C.f1_from_counts(1, 2, 1), 0.8)
    write_cycle(tmp_path, 0, [row(old_copied, "scored", COPIED), row(None, "unparseable", TWO_OBJECTS),
                              row(None, "unparseable", None)])
    write_cycle(tmp_path, 1, [row(0.2, "scored", PLAIN), row(0.2, "scored", PLAIN), row(0.0, "empty_answer", None)])
    base, after = reparse.reparse_run(tmp_path, resamples=200)
    full = C.combine(1.0, 0.8)  # (1, 0, 0) once the copies are dropped; the first object of the two is (1, 0, 0)
    assert base["stored"] == {"mean": pytest.approx(old_copied / 3, abs=1e-6), "n_unparseable": 2}
    assert base["reparsed"]["mean"] == pytest.approx(2 * full / 3, abs=1e-6)
    assert base["reparsed"]["n_unparseable"] == 1  # statements never parsed: no classification reply to re-read
    assert after["reparsed"]["mean"] == pytest.approx(2 * C.combine(0.0, 0.8) / 3, abs=1e-6)
    assert after["gain"]["mean"] == pytest.approx(after["reparsed"]["mean"] - base["reparsed"]["mean"], abs=1e-6)
    lo, hi = after["gain"]["ci95"]
    assert lo <= after["gain"]["mean"] <= hi and base["gain"] is None
    assert reparse.main([str(tmp_path), "--resamples", "200"]) == 0
    assert "| 1 | 3 |" in capsys.readouterr().out


def test_a_run_without_heldout_scores_is_one_clear_error(tmp_path, capsys):
    assert reparse.main([str(tmp_path)]) == 2
    assert "no cycle_*/heldout_scores.json" in capsys.readouterr().err
