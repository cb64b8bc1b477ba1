"""gradzoo analysis: gradient statistics, run-directory reading, comparisons.

Tested by tests/analysis.
"""
