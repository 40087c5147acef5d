"""The runstore test suite."""
