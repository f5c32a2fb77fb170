"""Synthetic training queries for unlabelled documents, written by the LLM teacher (``kd-generate-queries``).

``prompts`` holds the prompts and the reply parser; ``generate`` samples documents (never a positive of a test
query), asks the teacher for ``k`` queries per document in resumable shards, keeps a query only when a corpus
teacher ranks its source document in its top ``filter.top_k`` (round-trip consistency, as in InPars /
Promptagator / GPL) and writes ``queries.jsonl`` + ``manifest.json``; ``kd.retrieval.data.synthetic`` reads that
file back for ``kd-train data.synthetic=<file>``.
"""
