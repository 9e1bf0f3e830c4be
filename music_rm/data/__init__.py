"""Data in: the conversation schema, preference sources, the base model."""
