"""Command-line interface: ``mobilenets COMMAND`` (see :func:`mobilenets.cli.main.main`)."""
