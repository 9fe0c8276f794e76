"""Model backends for code generation: a local transformers model, llama.cpp, an OpenAI-compatible server."""
