"""Fault injection for tests: a Lightning callback that SIGKILLs its own process at a given training step.

Used through the real config (``+trainer.callbacks=[{_target_: faults.KillAtStep, step: N}]``) in a subprocess
with ``tests/`` on ``PYTHONPATH``. It acts only while ``KD_FAULT_KILL=1`` is set, so resuming the same saved config
without that variable trains on normally.
"""

import os
import signal

from lightning.pytorch.callbacks import Callback


class KillAtStep(Callback):
    """``kill -9`` this process at the start of the batch that would make global step ``step + 1``."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if os.environ.get("KD_FAULT_KILL") == "1" and trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
