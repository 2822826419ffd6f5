"""Insights: warnings that open once per condition and resolve when it clears."""
