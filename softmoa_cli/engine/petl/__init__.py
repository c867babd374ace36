"""Parameter-efficient transfer learning: adapters, mixtures of adapters, LoRA, and how
they are injected into the AST and frozen around."""
