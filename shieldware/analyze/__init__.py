"""Offline log analysis: access logs → columnar batches → the engine in batch mode → reports."""
