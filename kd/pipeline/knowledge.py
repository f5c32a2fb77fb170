"""The knowledge base: passages per topic, from a folder of Markdown pages or the embedded Kubernetes v1.28 API
reference (the field descriptions of the OpenAPI schemas that the ``kubernetes-validate`` package ships).

``kb.source`` is ``auto`` (``$KD_SHARED_DIR/data/kubernetes-docs`` or ``<repo>/../shared/data/kubernetes-docs``
when present, else the embedded reference), ``kubernetes-validate``, or a folder path.

A Markdown folder: each file belongs to the topic whose alias matches one of its path components (``pods/``,
``services-networking/``, ``storage.md`` ...); with no aliases, the first folder level (or the file stem) is the
topic. Front matter, Hugo shortcodes (``{{< ... >}}``, ``{{% ... %}}``), HTML comments and tags are removed; the
text is split on headings and blank lines and packed into passages of at most ``max_chars`` characters.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from kd.errors import DataFormatError

KUBERNETES_VALIDATE_SCHEMA_DIR = "kubernetes-json-schema/v1.28.0-local"
KUBERNETES_VALIDATE_INSTALL = "pip install kubernetes-validate==1.37.0"

# topic -> schema files of the embedded Kubernetes v1.28 API reference
EMBEDDED_TOPICS: dict[str, tuple[str, ...]] = {
    "pods": ("pod-v1", "podspec-v1", "container-v1", "probe-v1", "containerport-v1", "resourcerequirements-v1",
             "podstatus-v1", "lifecycle-v1"),
    "services": ("service-v1", "servicespec-v1", "serviceport-v1", "endpoints-v1", "ingress-networking-v1"),
    "storage": ("persistentvolume-v1", "persistentvolumespec-v1", "persistentvolumeclaim-v1",
                "persistentvolumeclaimspec-v1", "storageclass-storage-v1", "volume-v1"),
}

SCHEMA_TITLES = {"podspec": "PodSpec", "container": "Container", "probe": "Probe", "containerport": "ContainerPort",
                 "resourcerequirements": "ResourceRequirements", "podstatus": "PodStatus", "lifecycle": "Lifecycle",
                 "servicespec": "ServiceSpec", "serviceport": "ServicePort", "persistentvolumespec": "PersistentVolumeSpec",
                 "persistentvolumeclaimspec": "PersistentVolumeClaimSpec", "volume": "Volume"}

DEFAULT_ALIASES: dict[str, tuple[str, ...]] = {
    "pods": ("pods", "pod", "workloads"),
    "services": ("services", "service", "services-networking", "networking"),
    "storage": ("storage", "volumes", "persistent-volumes"),
}


@dataclass(frozen=True)
class Passage:
    id: str
    topic: str
    source: str
    text: str


@dataclass
class KnowledgeBase:
    source: str
    passages: list[Passage]

    def by_topic(self) -> dict[str, list[Passage]]:
        out: dict[str, list[Passage]] = {}
        for p in self.passages:
            out.setdefault(p.topic, []).append(p)
        return out

    def to_json(self) -> dict:
        return {"source": self.source, "passages": [asdict(p) for p in self.passages]}

    @classmethod
    def from_json(cls, obj: Mapping) -> "KnowledgeBase":
        return cls(source=obj["source"], passages=[Passage(**p) for p in obj["passages"]])


# ---------------------------------------------------------------- Markdown cleaning and splitting
_FRONT_MATTER = re.compile(r"\A\ufeff?(---|\+\+\+)\s*\n.*?\n\1\s*(\n|\Z)", re.S)
_SHORTCODE = re.compile(r"\{\{[<%].*?[%>]\}\}", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_HTML_TAG = re.compile(r"</?[A-Za-z][^<>]{0,300}>")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_HEADING = re.compile(r"^#{1,6}\s+", re.M)


def clean_markdown(text: str) -> str:
    """Drop front matter, Hugo shortcodes, HTML comments/tags; keep link text; collapse blank runs."""
    text = _FRONT_MATTER.sub("", text, count=1)
    text = _COMMENT.sub("", text)
    text = _SHORTCODE.sub("", text)
    text = _HTML_TAG.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def split_passages(text: str, max_chars: int = 800, min_chars: int = 120) -> list[str]:
    """Split on headings and blank lines, then pack consecutive blocks up to ``max_chars``."""
    blocks: list[str] = []
    for section in _HEADING.split(text):
        for block in re.split(r"\n\s*\n", section):
            block = " ".join(block.split())
            if not block:
                continue
            while len(block) > max_chars:  # cut an over-long block at a sentence end when possible
                cut = block.rfind(". ", 0, max_chars)
                cut = cut + 1 if cut > max_chars // 3 else max_chars
                blocks.append(block[:cut].strip())
                block = block[cut:].strip()
            if block:
                blocks.append(block)
    passages: list[str] = []
    current = ""
    for block in blocks:
        if current and len(current) + 1 + len(block) > max_chars:
            passages.append(current)
            current = block
        else:
            current = f"{current} {block}".strip()
    if current:
        passages.append(current)
    return [p for p in passages if len(p) >= min_chars]


def _topic_for(rel: Path, topics: Sequence[str], aliases: Mapping[str, Sequence[str]]) -> str | None:
    parts = [p.lower() for p in rel.with_suffix("").parts]
    if not topics:
        return parts[0] if len(parts) > 1 else parts[0]
    for topic in topics:
        names = {topic.lower(), *(a.lower() for a in aliases.get(topic, ()))}
        if any(part in names for part in parts):
            return topic
    return None


def load_markdown_folder(root: str | os.PathLike, topics: Sequence[str] = (),
                         aliases: Mapping[str, Sequence[str]] | None = None,
                         max_chars: int = 800, min_chars: int = 120) -> KnowledgeBase:
    """Passages of every ``*.md`` under ``root`` whose path matches one of ``topics``."""
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(root, None, "knowledge base folder does not exist")
    aliases = DEFAULT_ALIASES if aliases is None else aliases
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".md", ".markdown") and p.is_file())
    if not files:
        raise DataFormatError(root, None, "knowledge base folder holds no Markdown (*.md) files")
    passages: list[Passage] = []
    for path in files:
        rel = path.relative_to(root)
        topic = _topic_for(rel, topics, aliases)
        if topic is None:
            continue
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise DataFormatError(path, line, f"not valid UTF-8 (byte {exc.start}: {exc.reason})") from None
        for i, chunk in enumerate(split_passages(clean_markdown(text), max_chars, min_chars)):
            passages.append(Passage(id=f"{rel.as_posix()}#{i}", topic=topic, source=rel.as_posix(), text=chunk))
    _check_topics(passages, topics, str(root))
    return KnowledgeBase(source=str(root), passages=passages)


def _check_topics(passages: Iterable[Passage], topics: Sequence[str], where: str) -> None:
    found = {p.topic for p in passages}
    missing = [t for t in topics if t not in found]
    if missing:
        raise DataFormatError(where, None, f"no passages for topic(s) {missing}; topics found: {sorted(found)}")


# ---------------------------------------------------------------- embedded Kubernetes v1.28 API reference
def kubernetes_schema_dir() -> Path:
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the embedded knowledge base needs kubernetes-validate: {KUBERNETES_VALIDATE_INSTALL}")
    folder = Path(list(spec.submodule_search_locations)[0]) / KUBERNETES_VALIDATE_SCHEMA_DIR
    if not folder.is_dir():
        raise RuntimeError(f"{folder} is missing: this kubernetes-validate version does not ship the v1.28 schemas; "
                           f"{KUBERNETES_VALIDATE_INSTALL}")
    return folder


def _schema_passages(path: Path, topic: str, max_chars: int) -> list[Passage]:
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataFormatError(path, None, f"unreadable schema: {exc}") from None
    kind = path.stem.split("-")[0]
    title = schema.get("properties", {}).get("kind", {}).get("enum", [None])[0] or SCHEMA_TITLES.get(kind, kind)
    head = f"Kubernetes v1.28 API reference, {title}: {schema.get('description', '').strip()}"
    lines = []
    for field, prop in sorted(schema.get("properties", {}).items()):
        desc = (prop or {}).get("description", "").strip()
        if desc and field not in ("apiVersion", "kind", "metadata"):
            lines.append(f"{title}.{field}: {desc}")
    passages, current = [], head
    for line in lines:
        if len(current) + 1 + len(line) > max_chars and current:
            passages.append(current)
            current = f"{title} fields (v1.28): {line}"
        else:
            current = f"{current}\n{line}"
    passages.append(current)
    return [Passage(id=f"{path.name}#{i}", topic=topic, source=f"kubernetes-validate/{path.name}", text=t[: 2 * max_chars])
            for i, t in enumerate(passages)]


def load_kubernetes_reference(topics: Sequence[str], max_chars: int = 800) -> KnowledgeBase:
    folder = kubernetes_schema_dir()
    unknown = [t for t in topics if t not in EMBEDDED_TOPICS]
    if unknown:
        raise ValueError(f"kb.topics: {unknown} not in the embedded Kubernetes reference; choose from "
                         f"{sorted(EMBEDDED_TOPICS)} or point kb.source at a Markdown folder")
    passages: list[Passage] = []
    for topic in topics or sorted(EMBEDDED_TOPICS):
        for stem in EMBEDDED_TOPICS[topic]:
            path = folder / f"{stem}.json"
            if path.is_file():
                passages.extend(_schema_passages(path, topic, max_chars))
    _check_topics(passages, topics, str(folder))
    return KnowledgeBase(source=f"kubernetes-validate:{KUBERNETES_VALIDATE_SCHEMA_DIR}", passages=passages)


# ---------------------------------------------------------------- choosing the source
def shared_kubernetes_docs(repo_root: Path | None = None) -> Path | None:
    """``$KD_SHARED_DIR/data/kubernetes-docs`` or ``<repo>/../shared/data/kubernetes-docs`` if it exists."""
    candidates = []
    if os.environ.get("KD_SHARED_DIR"):
        candidates.append(Path(os.environ["KD_SHARED_DIR"]) / "data" / "kubernetes-docs")
    repo_root = repo_root or Path(__file__).resolve().parents[2]
    candidates.append(repo_root.parent / "shared" / "data" / "kubernetes-docs")
    return next((c for c in candidates if c.is_dir()), None)


def load_knowledge_base(source: str, topics: Sequence[str], max_chars: int = 800, min_chars: int = 120,
                        aliases: Mapping[str, Sequence[str]] | None = None) -> KnowledgeBase:
    if source == "auto":
        shared = shared_kubernetes_docs()
        if shared is not None:
            return load_markdown_folder(shared, topics, aliases, max_chars, min_chars)
        return load_kubernetes_reference(topics, max_chars)
    if source == "kubernetes-validate":
        return load_kubernetes_reference(topics, max_chars)
    return load_markdown_folder(source, topics, aliases, max_chars, min_chars)
