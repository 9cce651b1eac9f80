"""Small helpers shared by commands and reports."""
