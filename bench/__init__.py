"""Benchmarks (run as scripts: `make bench`); a package only so that import-linter can check their imports."""
