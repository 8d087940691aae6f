"""One module per `kwsbnn` subcommand: HELP, add_arguments(parser), run(args)."""


def not_built(name: str, issue: str):
    """A ``run`` for a subcommand that does not exist yet: says so and exits non-zero."""
    from ..errors import KwsError

    def run(args):
        raise KwsError(f"`kwsbnn {name}` is not built yet ({issue}).",
                       "see README.md for what works today")
    return run
