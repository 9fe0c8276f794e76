"""A script that seeds itself (``dd.setup(seed=0)``, as the examples do from their ``--seed``): its score
is the seed torch ended up with, so a test sees which seed a trial or a re-training trained with."""
import torch

import deepdive.engine as dd

run = dd.setup(precision="fp32", device="cpu", seed=0)
cfg = run.suggest("cfg", choices=["a", "b"], default="a")
run.log(score=float(torch.initial_seed()) + (0.5 if cfg == "b" else 0.0) + 0 * run.seed)
run.finish()
