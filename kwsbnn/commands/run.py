"""`kwsbnn run`: not built yet."""

from . import not_built

HELP = "the board host link (issue 7) [not built yet]"


def add_arguments(parser):
    pass


run = not_built("run", "the board host link (issue 7)")
