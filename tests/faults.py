"""Fault injection for tests: a Lightning callback that SIGKILLs its own process at a given training step.

Used through the real config (``+trainer.callbacks=[{_target_: faults.KillAtStep, step: N}]``) in a subprocess
with ``tests/`` on ``PYTHONPATH``. It acts only while ``KD_FAULT_KILL=1`` is set, so resuming the same saved config
without that variable trains on normally.
"""

import os
import signal

from lightning.pytorch.callbacks import Callback


class KillAtStep(Callback):
    """``kill -9`` this process at the start of the batch that would make global step ``step + 1``.

    With ``job`` set, only in that job of a Hydra multirun (the basic launcher runs the jobs in one process, so
    the kill ends the whole sweep there, as a lost node or a wall-time limit would).
    """

    def __init__(self, step: int, job: int | None = None):
        self.step = step
        self.job = job

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if os.environ.get("KD_FAULT_KILL") != "1" or trainer.global_step != self.step:
            return
        if self.job is not None:
            from hydra.core.hydra_config import HydraConfig

            if HydraConfig.get().job.num != self.job:
                return
        os.kill(os.getpid(), signal.SIGKILL)
