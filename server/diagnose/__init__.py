"""Performance diagnostics of the user's training code.

* :mod:`deepdive.diagnose.rules` — static rules (``DD1xx``) read from the source with :mod:`ast`; no torch.
  :func:`deepdive.diagnose.rules.analyze` gives the findings of one file, each with its fix where one
  is mechanical; the daemon publishes them as LSP diagnostics with code actions.
* :mod:`deepdive.diagnose.measure` — a few steps of the script under ``torch.profiler`` (in a job
  subprocess): the step-time breakdown and the lines that cost time; static findings with measured
  evidence are promoted with their share of the step.
* :mod:`deepdive.diagnose.compare` — *Apply and measure*: the script and its fixed copy run in
  alternating pairs; the speed-up with a confidence interval.
"""
