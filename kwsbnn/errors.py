"""The one exception type users see: what is wrong, and what to do about it."""


class KwsError(Exception):
    """A user-facing error. The command line prints it without a traceback and exits with 2.

    ``hint`` says what to do; keep it to one sentence.
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"
