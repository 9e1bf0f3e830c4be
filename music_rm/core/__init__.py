"""The shared core: params, errors, files, paths, MLflow tracking, command-line helpers. Imports nothing above it."""
