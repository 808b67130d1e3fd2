"""The one exception type for mistakes a user can make.

The CLI turns a :class:`UserError` into one line on stderr and exit status 2;
every other exception is an internal error and keeps its traceback.
"""


class UserError(Exception):
    """A bad name, path, value or file: something the user can fix."""
