"""The failures a stage reports in one line (no traceback): bad input, bad params, a service that gave up; and
UndeclaredParam, a defect of a stage's code."""


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


class UndeclaredParam(RuntimeError):
    """A stage read a params key its script does not declare (its PARAMS, the keys dvc.yaml lists as the stage's
    params). A defect of the code, not of params.yaml: not a one-line error, so its traceback points at the read."""

    def __init__(self, key: str):
        super().__init__(f"{key}: read by a stage that does not declare it; add it to the stage script's PARAMS, "
                         "then run `make deps` (dvc.yaml's params)")
