from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from kd.errors import ConfigError
from kd.retrieval.teachers import check_teacher_config

CONF = str(Path(__file__).resolve().parents[3] / "conf")


def _teacher(option, *overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"teacher={option}", "paths.output_dir=/tmp/x", *overrides])
    return OmegaConf.to_container(cfg.teacher, resolve=True)


@pytest.mark.parametrize("option", ["ensemble", "ensemble_mpnet", "bm25", "bi_encoder", "cross_encoder",
                                    "trained_minilm", "ms_marco"])
def test_every_shipped_teacher_config_passes_the_check(option):
    check_teacher_config(_teacher(option))


def test_ensemble_mpnet_adds_mpnet_to_the_default_members():
    assert set(_teacher("ensemble_mpnet")["members"]) == {"bm25", "minilm", "mpnet"}


@pytest.mark.parametrize("change, key", [
    ({"members": {}}, "teacher.members is empty"),
    ({"members": {"x": {"kind": "cross_encoder"}}}, "teacher.members.x.kind"),
    ({"weights": {"bm25": 1.0}}, "teacher.weights names"),
    ({"weights": {"bm25": 0.0, "minilm": 0.0}}, "teacher.weights are all 0"),
    ({"weights": {"bm25": -1.0, "minilm": 1.0}}, "teacher.weights.bm25"),
    ({"method": "mean"}, "teacher.method"),
    ({"kind": "oracle"}, "teacher.kind"),
])
def test_bad_teacher_configs_stop_with_one_line_naming_the_key(change, key):
    cfg = {**_teacher("ensemble"), **change}
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_teacher_config(cfg)
