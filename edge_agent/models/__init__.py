"""Hot-swap: the loaded classifiers by name, and the models-directory watch."""
