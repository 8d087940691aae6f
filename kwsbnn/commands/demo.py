"""`kwsbnn demo`: placeholder until the walking skeleton fills it."""

from . import not_built

HELP = "demo [not built yet]"


def add_arguments(parser):
    pass


run = not_built("demo", "walking skeleton")
