"""Sliding windows: a fixed-capacity key table of per-key window state, updated by Numba kernels."""

from shieldware.windows.table import WindowTable, warm_up

__all__ = ["WindowTable", "warm_up"]
