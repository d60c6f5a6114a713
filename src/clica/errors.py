"""User-facing errors: the CLI prints them as one line and exits non-zero."""


class ClicaError(Exception):
    """A problem with the user's input (flags, files, data); never a bug."""


def require(condition: bool, message: str) -> None:
    """Raise a :class:`ClicaError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ClicaError(message)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C / SIGTERM ended a run after saving it; ``resume`` is the command that continues it."""

    def __init__(self, resume: str):
        super().__init__(resume)
        self.resume = resume
