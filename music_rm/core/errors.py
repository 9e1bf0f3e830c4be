"""The failures a stage reports in one line (no traceback): bad input, bad params, a service that gave up."""


class InputError(ValueError):
    """Bad input, located by file, row (1-based) and field."""

    def __init__(self, file, row: int | None, field: str | None, message: str):
        self.file, self.row, self.field, self.reason = str(file), row, field, message
        where = self.file + (f": row {row}" if row is not None else "") + (f": field '{field}'" if field else "")
        super().__init__(f"{where}: {message}")


class ParamsError(ValueError):
    """A param that is missing, unknown, of the wrong type or out of range; the message names its key."""


class StageFailure(RuntimeError):
    """A failure outside the code (an API that kept failing)."""
