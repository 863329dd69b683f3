"""cromo-bench: the benchmark suite and leaderboard for continual self-supervised learning."""

__version__ = "0.1.0"
