"""Sub-commands of the `shieldware` CLI, one module each."""
