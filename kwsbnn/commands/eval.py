"""`kwsbnn eval`: not built yet."""

from . import not_built

HELP = "evaluation (issues 3, 4 and 6) [not built yet]"


def add_arguments(parser):
    pass


run = not_built("eval", "evaluation (issues 3, 4 and 6)")
