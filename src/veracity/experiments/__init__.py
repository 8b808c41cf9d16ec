"""The studies: one module each, with its Config, its run and its typed result (docs/extending.md)."""
