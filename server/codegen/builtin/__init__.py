"""The builtin backend: complete programs composed from tested building blocks, offline, no weights."""
