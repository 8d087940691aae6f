"""`kwsbnn search`: not built yet."""

from . import not_built

HELP = "architecture search (issue 8) [not built yet]"


def add_arguments(parser):
    pass


run = not_built("search", "architecture search (issue 8)")
