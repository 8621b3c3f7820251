"""Reports of a run: tables, plots, words, written as Markdown and self-contained HTML."""

from .write import write_report

__all__ = ["write_report"]
