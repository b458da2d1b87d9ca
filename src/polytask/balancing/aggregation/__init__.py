"""Gradient aggregation methods: per-task gradients combined into one update."""

__all__: list[str] = []
