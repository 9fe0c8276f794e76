"""What the builtin Keras generator covers, and the features it does not apply (and why)."""

from __future__ import annotations

from deepdive.codegen.intent import Intent

__all__ = ["COVERED", "NOT_APPLIED", "ENGINE_NOTE", "coverage", "validate"]

COVERED = {
    "image-classification": ("mlp", "cnn", "resnet"),
    "text-classification": ("lstm", "gru", "mlp", "transformer"),
    "regression": ("mlp",),
    "autoencoder": ("autoencoder", "mlp", "cnn"),
    "forecasting": ("lstm", "gru", "mlp"),
}

# Features this generator does not apply, and why (a comment in the program and a printed note).
NOT_APPLIED = {
    "prune": "structured pruning is not generated for Keras 3 (tensorflow-model-optimization does not "
    "support Keras 3); use framework torch with the deepdive engine",
    "onnx": "ONNX export is not generated for Keras (needs tf2onnx); use framework torch, or "
    "model.export(path, format='onnx') with tf2onnx installed",
    "torchscript": "TorchScript is a PyTorch format; this Keras program saves a .keras model instead",
}
ENGINE_NOTE = "the deepdive engine is torch-only; this Keras program uses keras callbacks instead"


def coverage() -> str:
    return "; ".join(f"{task} ({', '.join(archs)})" for task, archs in COVERED.items())


def validate(intent: Intent) -> None:
    """Raise ValueError (one line) when this generator cannot build ``intent``."""
    archs = COVERED.get(intent.task)
    if archs is None or intent.architecture not in archs:
        raise ValueError(
            f"the builtin Keras generator does not cover {intent.task} with {intent.architecture}; "
            f"it covers {coverage()}; try framework torch"
        )
    if intent.num_classes is not None and intent.num_classes < 2:
        raise ValueError(f"num_classes must be at least 2 (got {intent.num_classes})")
    for name in ("layers", "horizon", "seq_len", "vocab_size", "hidden_size", "latent_dim", "epochs", "batch_size"):
        value = getattr(intent, name)
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1 (got {value})")
    if intent.dropout is not None and not 0 <= intent.dropout < 1:
        raise ValueError(f"dropout must be in [0, 1) (got {intent.dropout})")

