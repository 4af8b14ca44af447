"""One module per `layerfit` subcommand; each has ``run(args) -> int``."""
