"""The form's settings: defaults read from the Hydra config (conf/pipeline.yaml), form values -> Hydra overrides,
and the checks made before a run starts (composed config validated, knowledge base loaded) so that a bad folder or
a topic without pages is reported at once, in plain words."""

from __future__ import annotations

import os
import re
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
TOPIC = re.compile(r"[A-Za-z0-9_-]+")
_SAFE_VALUE = re.compile(r"[\w./:+@~-]+")
_COMPOSE_LOCK = threading.Lock()  # Hydra's global state: one compose at a time


class SettingsError(ValueError):
    """A form value is wrong; the message says which field and why, in plain words."""


@dataclass
class Settings:
    """The pipeline's main settings as the form shows them."""

    run_name: str = ""
    kb_source: str = "auto"
    topics: str = "pods, services, storage"  # comma separated
    cycles: int = 2
    questions_per_cycle: int = 3
    teacher: str = "local"  # conf/pipeline/teacher/<name>.yaml
    teacher_model: str = ""
    teacher_base_url: str = ""  # openai back-end only
    student: str = "smollm2"  # conf/pipeline/student/<name>.yaml
    student_model: str = ""
    threads: int | None = None
    extra_overrides: str = ""  # further Hydra overrides, one per line

    def topic_list(self) -> list[str]:
        topics = [t.strip() for t in self.topics.replace("\n", ",").split(",") if t.strip()]
        if not topics:
            raise SettingsError("Topics: give at least one topic (for example: pods, services, storage).")
        bad = [t for t in topics if not TOPIC.fullmatch(t)]
        if bad:
            raise SettingsError(f"Topics: {bad} are not valid names (letters, digits, '-' and '_' only).")
        return topics


def group_options(group: str) -> list[str]:
    """Names of the config files in conf/pipeline/<group>/ (the back-ends the form offers)."""
    return sorted(p.stem for p in (CONF_DIR / "pipeline" / group).glob("*.yaml"))


def compose(overrides: list[str]) -> dict:
    """conf/pipeline.yaml composed with ``overrides``, as a plain dict (what ``kd-pipeline`` would run)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with _COMPOSE_LOCK, initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="pipeline", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


@dataclass
class FormDefaults:
    settings: Settings
    teachers: dict[str, dict[str, Any]] = field(default_factory=dict)  # option -> {model, base_url, backend}
    students: dict[str, dict[str, Any]] = field(default_factory=dict)


def form_defaults() -> FormDefaults:
    """The form prefilled from the Hydra defaults (and each back-end option's own defaults)."""
    cfg = compose([])
    teachers = {name: compose([f"pipeline/teacher={name}"])["teacher"] for name in group_options("teacher")}
    students = {name: compose([f"pipeline/student={name}"])["student"] for name in group_options("student")}
    teacher = next((n for n, t in teachers.items() if t == cfg["teacher"]), group_options("teacher")[0])
    student = next((n for n, s in students.items() if s == cfg["student"]), group_options("student")[0])
    s = Settings(kb_source=str(cfg["kb"]["source"]), topics=", ".join(cfg["topics"]), cycles=int(cfg["cycles"]),
                 questions_per_cycle=int(cfg["questions_per_cycle"]), teacher=teacher,
                 teacher_model=str(cfg["teacher"].get("model", "")),
                 teacher_base_url=str(cfg["teacher"].get("base_url", "") or ""), student=student,
                 student_model=str(cfg["student"].get("model", "")), threads=cfg.get("threads"))
    return FormDefaults(s, {n: {"model": t.get("model", ""), "base_url": t.get("base_url", ""),
                                "backend": t.get("backend", "")} for n, t in teachers.items()},
                        {n: {"model": v.get("model", "")} for n, v in students.items()})


def quote(value: Any) -> str:
    """A value as a Hydra override value (quoted when it holds characters the override grammar would parse)."""
    text = str(value)
    if _SAFE_VALUE.fullmatch(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def to_overrides(s: Settings, run_dir: Path) -> list[str]:
    """The Hydra overrides of ``kd-pipeline`` for these settings (the run writes into ``run_dir``)."""
    if s.teacher not in group_options("teacher"):
        raise SettingsError(f"Teacher back-end: {s.teacher!r} is not one of {group_options('teacher')}.")
    if s.student not in group_options("student"):
        raise SettingsError(f"Student back-end: {s.student!r} is not one of {group_options('student')}.")
    for label, value in (("Cycles", s.cycles), ("Questions per cycle", s.questions_per_cycle)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SettingsError(f"{label}: must be a whole number of at least 1, got {value!r}.")
    if not str(s.kb_source).strip():
        raise SettingsError("Knowledge base: give a folder of Markdown pages, or 'auto' / 'kubernetes-validate'.")
    out = [f"pipeline/teacher={s.teacher}", f"pipeline/student={s.student}",
           f"kb.source={quote(str(s.kb_source).strip())}", f"topics=[{','.join(s.topic_list())}]",
           f"cycles={s.cycles}", f"questions_per_cycle={s.questions_per_cycle}", f"run_dir={quote(run_dir)}",
           "progress=false"]
    if s.teacher_model.strip():
        out.append(f"teacher.model={quote(s.teacher_model.strip())}")
    if s.teacher_base_url.strip() and "base_url" in compose([f"pipeline/teacher={s.teacher}"])["teacher"]:
        out.append(f"teacher.base_url={quote(s.teacher_base_url.strip())}")
    if s.student_model.strip():
        out.append(f"student.model={quote(s.student_model.strip())}")
    if s.threads:
        out.append(f"threads={int(s.threads)}")
    out += [line.strip() for line in s.extra_overrides.splitlines() if line.strip() and not line.strip().startswith("#")]
    return out


def check(overrides: list[str]) -> dict:
    """Compose and validate the config and load the knowledge base; a problem raises ``SettingsError`` in plain
    words. Returns the composed config."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from kd.errors import ConfigError, DataFormatError
    from kd.pipeline.config import validate
    from kd.pipeline.knowledge import load_knowledge_base

    try:
        cfg = compose(overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        raise SettingsError(f"The settings do not make a valid pipeline config: {exc}") from None
    try:
        validate(cfg, cuda_available=None if cfg["finetune"]["quantization"] == "nf4" else False)
    except ConfigError as exc:
        raise SettingsError(f"Invalid setting: {exc}") from None
    kb = cfg["kb"]
    source = str(kb["source"])
    if source not in ("auto", "kubernetes-validate") and not Path(source).is_dir():
        raise SettingsError(f"Knowledge base folder {source} does not exist (or is not a folder).")
    try:
        load_knowledge_base(source, list(cfg["topics"]), int(kb.get("max_chars", 800)), int(kb.get("min_chars", 120)),
                            kb.get("aliases"))
    except DataFormatError as exc:
        if "no passages for topic" in exc.problem:
            raise SettingsError(f"Knowledge base {exc.path} has no pages for some topics: {exc.problem}") from None
        raise SettingsError(f"Knowledge base problem: {exc}") from None
    except (ValueError, RuntimeError) as exc:
        raise SettingsError(f"Knowledge base problem: {exc}") from None
    teacher = cfg["teacher"]
    if teacher.get("backend") == "openai":
        env = str(teacher.get("api_key_env") or "OPENAI_API_KEY")
        if not os.environ.get(env):
            raise SettingsError(f"The OpenAI-compatible teacher needs an API key in the environment variable {env}; "
                                f"set it in the shell that starts kd-ui.")
    return cfg


def settings_dict(s: Settings) -> dict:
    return asdict(s)
