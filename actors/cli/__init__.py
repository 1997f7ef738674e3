"""``manta``, the command line: ``main`` parses, ``client`` talks HTTP, ``config`` reads settings,
``evaluation`` runs ``manta eval``."""
