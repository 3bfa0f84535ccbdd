"""Tables and pages people read: terminal / Markdown tables, report.md."""
