"""Trials that take a while (for the kill -9 test)."""
import os
import time

import deepdive.engine as dd

run = dd.setup(precision="fp32", device="cpu")
x = run.suggest("x", 0.0, 1.0, default=0.5)
steps = int(os.environ.get("SLOW_STEPS", "8"))
for step in range(steps):
    time.sleep(float(os.environ.get("SLOW_SLEEP", "0.25")))
    run.log(score=x + step)
run.finish()
