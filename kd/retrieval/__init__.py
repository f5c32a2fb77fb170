"""System A: retrieval distillation (cross-encoder / corpus teachers -> bi-encoder student)."""
