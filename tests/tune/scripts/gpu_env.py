"""Records which GPU the trial's worker sees (CUDA_VISIBLE_DEVICES)."""
import os
import time

import deepdive.engine as dd

run = dd.setup(precision="fp32", device="cpu")
x = run.suggest("x", 0.0, 1.0, default=0.5)
with open(os.path.join(os.environ["GPU_ENV_OUT"], f"{os.getpid()}-{x}"), "w") as handle:
    handle.write(os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
time.sleep(0.4)
run.log(score=x)
run.finish()
