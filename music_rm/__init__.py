"""MUSIC: multi-step instruction contrast for multi-turn reward models (arXiv 2512.24693)."""
