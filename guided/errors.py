"""The one exception type the CLI turns into a one-line message and exit code 2."""

from models.spec import SpecError

__all__ = ["UserError", "USER_ERRORS"]


class UserError(ValueError):
    """Bad input from the user (a path, a name, a value): the message says what is wrong and how to fix it."""


#: Exceptions whose message is shown to the user as is, without a traceback.
USER_ERRORS = (UserError, SpecError)
