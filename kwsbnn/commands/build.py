"""`kwsbnn build`: placeholder until the walking skeleton fills it."""

from . import not_built

HELP = "build [not built yet]"


def add_arguments(parser):
    pass


run = not_built("build", "walking skeleton")
