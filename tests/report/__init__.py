"""Tests of experiment files, paper-style tables, significance tests and figures."""
