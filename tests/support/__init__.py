"""Test helpers shared by the mock and gateway test suites."""
