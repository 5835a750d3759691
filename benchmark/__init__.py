"""mirbench: microscopy image restoration benchmark (runner, registry, metrics, leaderboards)."""
