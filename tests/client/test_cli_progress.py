"""The transfer bar's speed is measured over bytes that moved, and its ETA comes only from a
measured speed: "ETA unknown" until there is one, never a guess."""

from __future__ import annotations

from lattice.cli.progress import SpeedMeter, eta_text


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_no_speed_and_no_eta_before_a_second_of_data():
    clock = Clock()
    meter = SpeedMeter(clock)
    meter.add(0)
    clock.now += 0.5
    meter.add(50_000_000)

    assert meter.speed() is None
    assert eta_text(1_000_000_000, meter.speed()) == "ETA unknown"


def test_speed_over_the_window_and_the_eta_from_it():
    clock = Clock()
    meter = SpeedMeter(clock)
    for second in range(11):
        clock.now = 100.0 + second
        meter.add(second * 10 * 1024 * 1024)  # 10 MiB/s

    speed = meter.speed()

    assert speed == 10 * 1024 * 1024
    assert len(meter.samples) <= 7  # only the last few seconds count
    assert eta_text(600 * 1024 * 1024, speed) == "ETA 1:00"
    assert eta_text(2 * 3600 * 10 * 1024 * 1024, speed) == "ETA 2:00:00"


def test_skipped_bytes_are_no_speed():
    """A resume that finds everything on the server moves nothing: no speed, no ETA."""
    clock = Clock()
    meter = SpeedMeter(clock)
    meter.add(0)
    clock.now += 3
    meter.add(0)

    assert meter.speed() is None
