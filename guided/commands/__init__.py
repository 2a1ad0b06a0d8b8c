"""The subcommands of ``guided``, grouped by topic; `guided.cli` collects their tables."""
