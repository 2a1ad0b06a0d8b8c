"""What reports draw and tabulate: figures (`plots`), tables and verdicts (`tables`), self-contained HTML
(`html`).
"""
