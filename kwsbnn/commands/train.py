"""`kwsbnn train`: not built yet."""

from . import not_built

HELP = "training (issue 3) [not built yet]"


def add_arguments(parser):
    pass


run = not_built("train", "training (issue 3)")
