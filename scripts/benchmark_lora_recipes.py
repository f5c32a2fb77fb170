"""LoRA recipes for the pipeline's student, side by side: does fine-tuning make the teacher's answers to *held-out*
questions more likely?

    python scripts/benchmark_lora_recipes.py --run RUN_DIR --cycle 2          # a finished kd-pipeline run
    python scripts/benchmark_lora_recipes.py --smoke                           # 2 pairs, 1 epoch, seconds

The training pairs are the run's own (``cycle_NN/trainset.json``: every pair up to that cycle) and the held-out
questions and teacher references are the run's held-out set (never trained on). For each recipe (the run's
``finetune`` config with a few keys changed) the base student is fine-tuned from scratch with
``kd.pipeline.finetune.finetune`` (the pipeline's own code path) and then scored without generating anything:
the mean negative log-likelihood (nats per answer token, the loss the fine-tune minimises) of each held-out
reference given its question, and of each training answer. A recipe that teaches transferable facts lowers the
held-out NLL against the base student (paired bootstrap 95 % interval over the questions); one that only
memorises lowers the training NLL and leaves the held-out NLL where it was, or raises it. No judge is involved, so
this runs in minutes where a held-out correctness score takes the judge's time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# each recipe names every key it changes, so a label holds whatever the run's own finetune config was
RECIPES: dict[str, dict] = {
    "q,v r8, 5 epochs, lr 1e-3 (the default before 2026-12-03)": {"epochs": 5, "lr": 1e-3},
    "q,v r8, 2 epochs, lr 1e-3 (the default)": {"epochs": 2, "lr": 1e-3},
    "q,v r8, 5 epochs, lr 2e-4": {"epochs": 5, "lr": 2e-4},
    "all linear r16, 5 epochs, lr 1e-3": {"lora_r": 16, "lora_alpha": 32, "epochs": 5, "lr": 1e-3,
                                          "target_modules": ALL_LINEAR},
    "all linear r16, 3 epochs, lr 2e-4": {"lora_r": 16, "lora_alpha": 32, "epochs": 3, "lr": 2e-4,
                                          "target_modules": ALL_LINEAR},
}
BASE = {"lora_r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}  # under every recipe

SMOKE_PAIRS = [
    {"question": "What is a Pod?", "reference": "A Pod is the smallest deployable unit: one or more containers."},
    {"question": "What does a Service do?", "reference": "A Service exposes a set of Pods behind one stable address."},
]
SMOKE_HELDOUT = [
    {"question": "What is a PersistentVolume?", "reference": "A PersistentVolume is storage provisioned in the cluster."},
    {"question": "What is a headless Service?", "reference": "A headless Service has no cluster IP."},
]


def load_run(run_dir: Path, cycle: int) -> tuple[list[dict], list[dict], dict, str]:
    """(training pairs, held-out pairs, the run's finetune config, the student model) of a finished run."""
    def data(path: Path) -> dict:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (a kd-pipeline run with eval.heldout_per_topic > 0 that "
                                    f"finished cycle {cycle})")
        return json.loads(path.read_text())["data"]

    train = data(run_dir / f"cycle_{cycle:02d}" / "trainset.json")["rows"]
    questions = data(run_dir / "heldout_questions.json")["questions"]
    refs = data(run_dir / "heldout_references.json")["references"]
    heldout = [{"question": q["question"], "reference": r["reference"]} for q, r in zip(questions, refs)
               if r["reference"]]
    config = json.loads((run_dir / "manifest.json").read_text())["config"]
    return train, heldout, dict(config["finetune"]), config["student"]["model"]


def answer_nll(model, tokenizer, pairs: list[dict], max_length: int) -> list[float]:
    """Mean NLL (nats per answer token) of each pair's reference given its question; shape (len(pairs),)."""
    import torch

    from kd.pipeline.trainset import encode_example

    out = []
    model.eval()
    with torch.no_grad():
        for p in pairs:
            ex = encode_example(tokenizer, p["question"], p["reference"], max_length)
            ids = torch.tensor([ex["input_ids"]])
            labels = torch.tensor([ex["labels"]])
            out.append(float(model(input_ids=ids, labels=labels).loss))
    return out


def score(student: str, adapter: str | None, train: list[dict], heldout: list[dict], max_length: int) -> dict:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kd.pipeline import memory
    from kd.pipeline.models import resolve_llm

    path = resolve_llm(student)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    if adapter:
        model = PeftModel.from_pretrained(model, adapter)
    result = {"train": answer_nll(model, tokenizer, train, max_length),
              "heldout": answer_nll(model, tokenizer, heldout, max_length)}
    del model
    memory.free_memory()
    return result


def _ci(ci) -> str:
    return f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a finished kd-pipeline run directory with a held-out set")
    parser.add_argument("--cycle", type=int, default=2, help="train on the pairs of cycles 1..CYCLE")
    parser.add_argument("--recipes", nargs="*", default=None, help="names of RECIPES to run (default: all)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="SmolLM2, 2 pairs, 1 epoch, two recipes")
    args = parser.parse_args(argv)
    import torch

    from kd.pipeline.finetune import finetune
    from kd.pipeline.stats import mean_ci, paired_diff_ci

    if args.threads:
        torch.set_num_threads(args.threads)
    recipes = {k: RECIPES[k] for k in (args.recipes or RECIPES)}
    if args.smoke:
        from omegaconf import OmegaConf

        train, heldout, student = SMOKE_PAIRS, SMOKE_HELDOUT, "packaged:smollm2"
        conf = Path(__file__).resolve().parents[1] / "conf" / "pipeline.yaml"
        fcfg = OmegaConf.to_container(OmegaConf.load(conf))["finetune"]
        fcfg["epochs"] = 1
        recipes = {"smoke: epochs 1": {}, "smoke: epochs 2": {"epochs": 2}}
    else:
        if args.run is None:
            parser.error("--run RUN_DIR is required (or --smoke)")
        train, heldout, fcfg, student = load_run(args.run, args.cycle)
    max_length = int(fcfg["max_length"])
    print(f"student {student}; {len(train)} training pairs, {len(heldout)} held-out questions; base finetune "
          f"config: {json.dumps(fcfg)}", flush=True)
    base = score(student, None, train, heldout, max_length)
    rows = []
    with tempfile.TemporaryDirectory(prefix="kd-lora-recipes-") as tmp:
        for i, (name, change) in enumerate(recipes.items()):
            cfg = {**fcfg, **BASE, **change}
            t0 = time.perf_counter()
            info = finetune(student, train, cfg, args.seed, Path(tmp) / f"r{i}" / "adapter", progress=False)
            seconds = time.perf_counter() - t0
            got = score(student, str(Path(tmp) / f"r{i}" / "adapter"), train, heldout, max_length)
            held = paired_diff_ci(got["heldout"], base["heldout"], seed=args.seed)
            trn = paired_diff_ci(got["train"], base["train"], seed=args.seed)
            rows.append({"recipe": name, "trainable": info["trainable_params"], "steps": info["steps"],
                         "seconds": seconds, "loss": (info["losses"][0], info["losses"][-1]),
                         "train": mean_ci(got["train"])["mean"], "train_change": trn,
                         "heldout": mean_ci(got["heldout"])["mean"], "heldout_change": held})
            print(f"  {name}: held-out NLL {rows[-1]['heldout']:.3f} ({held['mean']:+.3f} {_ci(held['ci95'])}), "
                  f"{seconds:.0f} s", flush=True)
    print(f"\nbase student: training-answer NLL {mean_ci(base['train'])['mean']:.3f}, held-out reference NLL "
          f"{mean_ci(base['heldout'])['mean']:.3f} (nats per answer token)\n")
    print("| recipe | trainable params | steps | train s | loss first -> last | training NLL (change) | held-out NLL "
          "| held-out change [95 % CI] |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['recipe']} | {r['trainable']:,} | {r['steps']} | {r['seconds']:.0f} | {r['loss'][0]:.3f} -> "
              f"{r['loss'][1]:.3f} | {r['train']:.3f} ({r['train_change']['mean']:+.3f}) | {r['heldout']:.3f} | "
              f"{r['heldout_change']['mean']:+.3f} {_ci(r['heldout_change']['ci95'])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
