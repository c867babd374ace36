"""The AST backbone and its checkpoints."""
