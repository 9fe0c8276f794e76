"""The LitServe arm of ``bench_serve.py``: a LitAPI serving an export folder's eager model.

It takes and gives the same Open Inference Protocol JSON body as ``deepdive deploy serve`` (so both
arms parse the same bytes), and lets LitServe join requests into one batch (``max_batch_size``,
``batch_timeout``). A module of its own because LitServe pickles the API into a spawned process,
which imports its class by module name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import litserve as ls
import numpy as np
import torch

from deepdive.deploy.manifest import DATATYPES, TO_DATATYPE, read


class OIPJsonAPI(ls.LitAPI):
    def __init__(self, folder: str, threads: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.folder, self.threads = folder, threads

    def setup(self, device: str) -> None:
        torch.set_num_threads(self.threads)
        self.manifest = read(self.folder)
        self.model = torch.load(self.manifest.form_path(Path(self.folder), "eager"), map_location="cpu",
                                weights_only=False).eval()

    def decode_request(self, request):  # type: ignore[no-untyped-def] # unannotated: LitServe then passes the JSON body
        return [np.asarray(t["data"], dtype=DATATYPES[t["datatype"]]).reshape(t["shape"]) for t in request["inputs"]]

    def batch(self, inputs: list[list[np.ndarray]]) -> list[np.ndarray]:
        return [np.concatenate([one[i] for one in inputs]) for i in range(len(inputs[0]))]

    def predict(self, x: list[np.ndarray]) -> list[np.ndarray]:
        with torch.inference_mode():
            out = self.model(*[torch.from_numpy(a) for a in x])
        return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]

    def unbatch(self, output: list[np.ndarray]) -> list[list[np.ndarray]]:
        return [[o[i:i + 1] for o in output] for i in range(len(output[0]))]  # one row per request

    def encode_response(self, output: list[np.ndarray]) -> dict[str, Any]:
        return {"outputs": [{"name": t.name, "datatype": TO_DATATYPE[o.dtype.name], "shape": list(o.shape),
                             "data": o.ravel().tolist()} for t, o in zip(self.manifest.outputs, output)]}
