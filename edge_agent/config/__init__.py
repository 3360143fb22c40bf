"""YAML -> frozen Config, every problem named by its dotted path."""
