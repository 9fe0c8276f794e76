"""A tiny search space whose trials end every way: complete, raise, killed."""
import os

import deepdive.engine as dd

run = dd.setup(precision="fp32", device="cpu")
mode = run.suggest("mode", choices=["ok", "raise", "kill"], default="ok")
x = run.suggest("x", 0.0, 1.0, default=0.5)
if mode == "raise" and not os.path.exists("fixed"):
    raise ValueError(f"x={x:.3f} is not allowed here")
if mode == "kill":
    os.kill(os.getpid(), 9)
for step in range(3):
    run.log(score=x * (step + 1))
run.finish()
