"""Tool-calling evaluation (`ft eval`) and trying a model by hand (`ft chat`, `ft generate`).

The trainer calls ft.evaluate.runner.evaluate_loaded on its in-memory model. Nothing here imports torch at module
level, because the `ft` command imports the CLI modules on every call.
"""
