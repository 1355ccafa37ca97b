"""IMPALA / V-trace agent components."""
