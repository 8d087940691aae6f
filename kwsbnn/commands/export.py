"""`kwsbnn export`: placeholder until the walking skeleton fills it."""

from . import not_built

HELP = "export [not built yet]"


def add_arguments(parser):
    pass


run = not_built("export", "walking skeleton")
