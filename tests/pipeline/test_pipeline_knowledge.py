"""Knowledge base: Markdown folders (Hugo shortcodes cleaned, topics, passages) and the embedded K8s v1.28 reference."""

from __future__ import annotations

import pytest
from pipeline_helpers import kb_dir  # noqa: F401 - fixture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kd.errors import DataFormatError
from kd.pipeline.knowledge import (clean_markdown, load_knowledge_base, load_kubernetes_reference,
                                   load_markdown_folder, shared_kubernetes_docs, split_passages)


def test_clean_markdown_removes_front_matter_shortcodes_comments():
    text = ("---\ntitle: Pods\nweight: 10\n---\n# Pods\n<!-- hidden -->\nA {{< glossary_tooltip text=\"Pod\" "
            "term_id=\"pod\" >}} runs containers.\n{{% note %}}\nKeep this.\n{{% /note %}}\nSee [the docs](/x/y).")
    out = clean_markdown(text)
    assert "title:" not in out and "{{" not in out and "}}" not in out and "hidden" not in out
    assert "runs containers." in out and "Keep this." in out and "See the docs." in out


def test_split_passages_respects_max_chars_and_drops_tiny():
    text = "# A\n\n" + " ".join(["Sentence number %d is here." % i for i in range(100)]) + "\n\n# B\n\nshort"
    parts = split_passages(text, max_chars=200, min_chars=20)
    assert parts and all(20 <= len(p) <= 200 for p in parts)
    assert not any(p == "short" for p in parts)


def test_markdown_folder_topics(kb_dir):
    kb = load_markdown_folder(kb_dir, ["pods", "services", "storage"], max_chars=300, min_chars=40)
    groups = kb.by_topic()
    assert set(groups) == {"pods", "services", "storage"}
    assert len(groups["storage"]) >= 2
    assert all("{{" not in p.text for p in kb.passages)
    assert any("Pending phase" in p.text for p in groups["pods"])


def test_markdown_folder_missing_topic_names_what_exists(kb_dir):
    with pytest.raises(DataFormatError, match=r"no passages for topic\(s\) \['networking-policies'\]"):
        load_markdown_folder(kb_dir, ["pods", "networking-policies"])


def test_markdown_folder_bad_encoding_names_file_and_line(tmp_path):
    (tmp_path / "pods").mkdir()
    (tmp_path / "pods" / "bad.md").write_bytes(b"# Pods\n\nfine line\n\xff\xfe broken\n")
    with pytest.raises(DataFormatError) as err:
        load_markdown_folder(tmp_path, ["pods"])
    assert "bad.md:4" in str(err.value) and "UTF-8" in str(err.value)


def test_embedded_kubernetes_reference():
    kb = load_kubernetes_reference(["pods", "services", "storage"])
    assert kb.source.endswith("v1.28.0-local")
    text = {t: " ".join(p.text for p in ps) for t, ps in kb.by_topic().items()}
    assert "Probe.failureThreshold" in text["pods"]
    assert "ServicePort.targetPort" in text["services"] or "ServiceSpec.clusterIP" in text["services"]
    assert "PersistentVolumeClaim" in text["storage"] and "StorageClass" in text["storage"]
    assert all(len(p.text) <= 1600 for p in kb.passages)


def test_auto_source_uses_shared_docs_when_present(tmp_path, monkeypatch, kb_dir):
    import shutil

    shared = tmp_path / "shared"
    shutil.copytree(kb_dir, shared / "data" / "kubernetes-docs")
    monkeypatch.setenv("KD_SHARED_DIR", str(shared))
    assert shared_kubernetes_docs() == shared / "data" / "kubernetes-docs"
    kb = load_knowledge_base("auto", ["pods"], max_chars=300, min_chars=40)
    assert kb.source == str(shared / "data" / "kubernetes-docs")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.binary(max_size=400), st.text(max_size=400).map(lambda t: t.encode("utf-8"))))
def test_markdown_loader_loads_or_fails_clearly(tmp_path_factory, content):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "pods").mkdir()
    (root / "pods" / "page.md").write_bytes(content)
    try:
        kb = load_markdown_folder(root, ["pods"], min_chars=1)
    except DataFormatError as exc:
        assert str(root) in str(exc)
    else:
        assert all(p.topic == "pods" and p.text for p in kb.passages)
