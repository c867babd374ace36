"""The torch engine: AST backbone, PETL methods, data, training. Never imports the CLI."""
