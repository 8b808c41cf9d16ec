"""Thin Typer CLI: every command wraps a public library function."""
