"""The diagnostics corpus: slow scripts with one planted problem each and clean ones (README.md says more)."""
