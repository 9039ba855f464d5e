"""The one exception type that users can cause, reported in one line by the CLI."""


class ApimonError(Exception):
    """A problem the user can fix; the message says what went wrong and how to fix it."""


class ConfigError(ApimonError):
    """The project's apimon.toml is missing, unreadable or invalid."""


class WarehouseBusy(ApimonError):
    """Another apimon command holds the warehouse's write lock; the message names it."""
