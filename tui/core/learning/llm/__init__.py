"""Fine-tuning an open causal language model on the team's labels, served as a GGUF.

A base model (Gemma 3 270M from the registry package, or any Hugging Face folder) learns to
answer `Ticket: <text>\\nLabel:` with ` <label><eos>`; the result is merged, converted to GGUF
with llama.cpp's own converter and written with an Ollama `Modelfile`, a `report.json` and a
`backend.toml` table that routes with it in process.

Importing this package is cheap: torch, transformers, peft and gguf are imported inside the
functions that need them (the `finetune` extra), so the app never pays for them.
"""
