"""``kd-generate-queries``: synthetic training queries for unlabelled documents (config conf/generate_queries.yaml).

    kd-generate-queries sample=300 k=3 out_dir=outputs/synthetic/scifact
    kd-train data=scifact data.synthetic=outputs/synthetic/scifact/queries.jsonl data.synthetic_ratio=1
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

import kd.config  # noqa: F401  (registers the ${kd.*} resolvers)

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="generate_queries")
def main(cfg: DictConfig) -> None:
    from kd.errors import exit_on_user_error
    from kd.pipeline.teacher import TeacherError
    from kd.retrieval.synthetic.generate import MANIFEST_FILE, QUERIES_FILE, run_generation

    logging.getLogger("kd").setLevel(logging.INFO)
    with exit_on_user_error("kd-generate-queries"):
        try:
            manifest = run_generation(cfg)
        except TeacherError as exc:  # the API teacher failed after its retries; finished shards are kept
            print(f"kd-generate-queries: error: {exc}", file=sys.stderr)
            sys.exit(2)
    counts, timing = manifest["counts"], manifest["timing"]
    out = Path(cfg.out_dir)
    print(f"{counts['documents']} documents ({counts['test_positives_excluded']} test positives excluded): "
          f"{counts['generated']} queries generated, {counts['kept']} kept, {counts['dropped']} dropped by the "
          f"filter ({manifest['filter']['teacher']}, top {manifest['filter']['top_k']}); "
          f"{timing['seconds_per_query']:.2f} s per query\n{out / QUERIES_FILE}\n{out / MANIFEST_FILE}")


if __name__ == "__main__":
    main()
