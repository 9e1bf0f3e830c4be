"""The failures a stage reports in one line (no traceback): bad input, bad params, a service that gave up. Their
messages have their secrets redacted (core/secrets.py): a server's error body may echo the request's API key."""
from .secrets import redact


class InputError(ValueError):
    """Bad input, located by file, row (1-based) and field."""

    def __init__(self, file, row: int | None, field: str | None, message: str):
        self.file, self.row, self.field, self.reason = str(file), row, field, redact(message)
        where = self.file + (f": row {row}" if row is not None else "") + (f": field '{field}'" if field else "")
        super().__init__(f"{where}: {self.reason}")


class ParamsError(ValueError):
    """A param that is missing, unknown, of the wrong type or out of range; the message names its key."""

    def __init__(self, message: str):
        super().__init__(redact(message))


class StageFailure(RuntimeError):
    """A failure outside the code (an API that kept failing)."""

    def __init__(self, message: str):
        super().__init__(redact(message))
