"""`kwsbnn verilog`: placeholder until the walking skeleton fills it."""

from . import not_built

HELP = "verilog [not built yet]"


def add_arguments(parser):
    pass


run = not_built("verilog", "walking skeleton")
