"""The reward model: chat encoding, Bradley-Terry training with TRL, loading and scoring."""
