"""Parameters of every kind; the score is a function of them (the test recomputes it from the storage)."""
import sys

import deepdive.engine as dd

run = dd.setup(precision="fp32", device="cpu")
high = float(sys.argv[sys.argv.index("--high") + 1]) if "--high" in sys.argv else 1.0
x = run.suggest("x", high / 10, high, log=True, default=high / 2)
n = run.suggest("n", 0, 8, step=2, default=4)
c = run.suggest("c", choices=["a", "b", "c"], default="a")
peak = "--peak" in sys.argv  # the score peaks at the first report, then falls (an overfitting model)
curve = [0.0, 1.0] if not peak else [1.0, -5.0]
if "--curve" in sys.argv:  # e.g. --curve 1,3,2,2,5: what each report adds to the parameters' score
    curve = [float(v) for v in sys.argv[sys.argv.index("--curve") + 1].split(",")]
for step, offset in enumerate(curve):
    run.log(score=x + n + 10 * "abc".index(c) + offset)
run.finish()
print("finished all", len(curve), "reports")
