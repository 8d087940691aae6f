"""`kwsbnn report`: not built yet."""

from . import not_built

HELP = "trade-off and Pareto reports (issues 3 and 8) [not built yet]"


def add_arguments(parser):
    pass


run = not_built("report", "trade-off and Pareto reports (issues 3 and 8)")
