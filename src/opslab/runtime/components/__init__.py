"""The platform's processes, one module per program, and the order they start in."""
