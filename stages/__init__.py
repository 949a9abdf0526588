"""DVC stages: one thin module per stage (``python -m stages.<name>``); params section = module name."""
