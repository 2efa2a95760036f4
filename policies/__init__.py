"""Pure tagging-policy domain: models, loading, evaluation. No I/O, imports nothing of the project."""
