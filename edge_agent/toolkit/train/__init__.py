"""Workstation: MiniLM start, teacher, grouped student, distillation, the train pipeline."""
