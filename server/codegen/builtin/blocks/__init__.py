"""Building blocks of the generated PyTorch programs: source text, composed by :mod:`deepdive.codegen.builtin.pytorch`.

Each block is a piece of a complete program, written as it appears in the output. ``$NAME``
placeholders are filled with :class:`string.Template`; the generated code itself never uses ``$``.
Every block is exercised by tests/codegen/test_builtin_torch.py, which generates programs from
prompts and runs them (``--smoke`` and the verifier's property checks).

- :mod:`.common`: what every program has (``DataError``, ``to_device``, the synthetic dataset, the split);
- :mod:`.models`: one model per architecture, each with ``build_model()``;
- :mod:`.batches`: ``example_batch()`` and ``compute_loss()`` per family;
- :mod:`.data`: the data loaders, real files only.
"""
