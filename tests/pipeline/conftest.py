"""Pipeline test fixtures live in pipeline_helpers.py (a unique module name, importable from the tests)."""

from pipeline_helpers import kb_dir, make_config, openai_server, smollm_tokenizer_dir, tiny_student  # noqa: F401
