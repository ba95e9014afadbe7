"""The one exception type that every module raises for a user's mistake."""


class UserError(ValueError):
    """A mistake in what the user asked for: reported as one line, without a traceback."""
