"""Deployment: export a trained (or compressed) model, serve it with a dynamic batcher, choose its runtime.

``deepdive deploy export|serve|bench|triton`` (``server/cli_deploy.py``) are thin adapters over these
modules; the editor's *Deploy Model…* runs them as jobs. Each module is named after its concept:

- :mod:`~deepdive.deploy.errors`   :class:`DeployError`, the one-line error every part raises on bad input;
- :mod:`~deepdive.deploy.source`   the model and its example inputs, from a model file and/or a script
  (``build_model()`` plus ``example_inputs(batch_size)`` or ``example_batch()``);
- :mod:`~deepdive.deploy.manifest` ``deploy.json``, written next to the exported forms: inputs, outputs,
  each form's file and its measured difference from the eager model, the runtime choice;
- :mod:`~deepdive.deploy.export`   the forms: ``torch.export`` (.pt2), TorchScript, ONNX, each checked
  against the eager model (ONNX through onnxruntime);
- :mod:`~deepdive.deploy.runners`  one model instance of a form (eager, compiled, onnxruntime, int8)
  that runs a batch of numpy arrays;
- :mod:`~deepdive.deploy.batcher`  the dynamic batcher (Triton's semantics: max batch size, preferred
  sizes, max queue delay, per-request timeout, bounded queue) over several instances;
- :mod:`~deepdive.deploy.oip`      the Open Inference Protocol v2 tensors: JSON and the binary-data
  extension, both ways;
- :mod:`~deepdive.deploy.app`      the ASGI application (Starlette, served by uvicorn): health, metadata,
  infer, Prometheus ``/metrics`` (its collectors in :mod:`~deepdive.deploy.metrics`);
- :mod:`~deepdive.deploy.target`   ``serve --target-p99``: max batch and queue delay chosen from measured run times;
- :mod:`~deepdive.deploy.choose`   ``deploy bench``: the candidate forms measured on this machine at the
  batch sizes the batcher forms, the fastest within tolerance chosen, with its reason;
- :mod:`~deepdive.deploy.split`    a model larger than a device budget placed across devices with
  accelerate's device-map tools;
- :mod:`~deepdive.deploy.triton`   a Triton model repository (the model and ``config.pbtxt``).

Importing this package loads nothing heavy; the modules that need torch import it themselves.
"""
