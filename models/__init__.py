"""Trained judges shipped with lref: one folder each (weights + judge.json card + README.md).
`lref serve` uses the one here by default; `--judge zero-shot` keeps the bare base model."""
