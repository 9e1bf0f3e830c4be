"""Evaluation suites (held-out pairs, LLM judge, Best-of-N, MT-Bench, RewardBench), their statistics and reports."""
