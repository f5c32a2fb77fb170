"""``kd-ui``: the "Start pipeline" page (FastAPI app in ``kd.ui.app``) on top of ``kd.pipeline``."""
