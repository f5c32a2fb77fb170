"""Prompts for the teacher (questions, references), the student, and parsing of their replies."""

from __future__ import annotations

import re

TEACHER_SYSTEM = "You are a Kubernetes expert who writes precise exam questions and answers."


def question_messages(passage: str, topic: str) -> list[dict]:
    return [
        {"role": "system", "content": TEACHER_SYSTEM},
        {"role": "user", "content": (
            f"Passage about Kubernetes {topic}:\n\"\"\"\n{passage}\n\"\"\"\n\n"
            "Write ONE short question that this passage answers. The question must make sense without the "
            "passage (name the Kubernetes object or field it is about). Reply with the question only.")},
    ]


def reference_messages(question: str, passage: str) -> list[dict]:
    return [
        {"role": "system", "content": TEACHER_SYSTEM},
        {"role": "user", "content": (
            f"Passage:\n\"\"\"\n{passage}\n\"\"\"\n\nQuestion: {question}\n\n"
            "Answer the question in one to three sentences, using only facts from the passage. "
            "Reply with the answer only.")},
    ]


def student_messages(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


_PREFIX = re.compile(r"^\s*(?:[-*>\d.)\s]+)?(?:\*\*)?(?:question|q)\s*\d*\s*[:.-]\s*(?:\*\*)?", re.I)


def parse_question(text: str) -> str | None:
    """The first line that reads as a question, cleaned of "Question:", numbering, quotes; else None."""
    for line in text.splitlines():
        line = _PREFIX.sub("", line).strip().strip("*\"'` ").strip()
        line = re.sub(r"^\d+[.)]\s*", "", line)
        if "?" in line:
            line = line[: line.index("?") + 1].strip()
            if 10 <= len(line) <= 300:
                return line
    return None


def normalise(question: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", question.lower()).split())


def parse_reference(text: str) -> str:
    text = re.sub(r"^\s*(?:\*\*)?answer\s*[:.-]\s*(?:\*\*)?", "", text.strip(), flags=re.I)
    return text.strip()
