"""The built-in stage implementations (importing this package registers them)."""

from varsec.study.builtin import attacks, data, defenses, evaluation, recsys, vision

__all__ = ["attacks", "data", "defenses", "evaluation", "recsys", "vision"]
