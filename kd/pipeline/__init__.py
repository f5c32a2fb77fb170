"""System B: iterative LLM distillation (teacher questions + references -> student baseline -> relevancy ->
LoRA fine-tune -> re-score, over N cycles, with a resumable run directory).

Heavy modules (torch, transformers, peft, lightning) are imported inside the functions that need them so that
``kd-pipeline --help`` and config validation stay fast.
"""
