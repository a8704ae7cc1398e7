"""One module per subcommand: `<name>_cli` (options only) calls `<name>()` (the work)."""
