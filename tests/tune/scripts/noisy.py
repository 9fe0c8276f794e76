"""A fake objective with known noise: score = TRUE[cfg] + noise(seed), the seed being the trial's training seed.

With the search's seed (0), "lucky" gets +0.4 and looks best (0.9); with any other seed every
configuration is within 0.01 of its true value, so re-training reveals "good" (0.7) as the best.
``--fail-seed S``: the "good" configuration raises when trained with seed S (a failed re-training).
"""
import sys

import torch

import deepdive.engine as dd

TRUE = {"lucky": 0.5, "good": 0.7, "poor": 0.3}
run = dd.setup(precision="fp32", device="cpu")
cfg = run.suggest("cfg", choices=["lucky", "good", "poor"], default="poor")
seed = torch.initial_seed()  # the worker seeds torch with the job's seed
if "--fail-seed" in sys.argv and cfg == "good" and seed == int(sys.argv[sys.argv.index("--fail-seed") + 1]):
    raise RuntimeError(f"diverged with seed {seed}")
noise = 0.4 if (cfg == "lucky" and seed == 0) else 0.01 * ((seed * 7 + len(cfg)) % 3 - 1)
for step in range(3):
    run.log(score=(TRUE[cfg] + noise) * (step + 1) / 3)
run.finish()
