"""Built-in subcommands, one module each, registered through the softmoa.commands entry points."""
