"""A settable stand-in for ``time.time`` / ``time.monotonic`` where code takes a timer."""


class FakeTimer:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now
