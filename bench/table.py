"""The benchmark's table: the median of each measure over the rounds, beside its reference,
the ratio, and the target it is judged against."""

from __future__ import annotations

from collections.abc import Callable

from event_measures import EventMeasures, events_rows
from measure import Rounds

LEVELS = (1, 8, 32)


def mb(kib: float) -> float:
    """KiB to MB (10^6 bytes)."""
    return kib * 1024 / 1e6


def table(r: Rounds, m: dict[str, float], events: EventMeasures) -> str:
    """The table, from the rounds, the memory read and the events' measures."""
    med = r.median
    rows: list[tuple[str, str, str, str, str, str]] = []

    def row(
        name: str,
        value: float,
        reference: float | None,
        unit: str,
        *,
        target: tuple[str, Callable[[float], bool]] | None = None,
        check: float | None = None,
        digits: int = 1,
    ) -> None:
        ratio = value / reference if reference else None
        verdict = ""
        if target is not None:
            judged = check if check is not None else ratio
            verdict = "PASS" if judged is not None and target[1](judged) else "MISS"
        rows.append(
            (
                name,
                f"{value:.{digits}f} {unit}",
                f"{reference:.{digits}f} {unit}" if reference is not None else "",
                f"{ratio:.2f}x" if ratio is not None else "",
                target[0] if target else "",
                verdict,
            )
        )

    def errors_row(level: int) -> None:
        endpoint, reference = r.errors[f"endpoint {level}"], r.errors[f"reference {level}"]
        rows.append(
            (f"  errors at {level} (all rounds)", str(endpoint), str(reference), "", "0",
             "PASS" if endpoint == 0 else "MISS")
        )  # fmt: skip

    row("p50 at 1 connection (vs floor)", med("endpoint 1 p50"), med("floor p50"), "ms",
        target=("<= 1.25x", lambda x: x <= 1.25))  # fmt: skip
    row("  p99 at 1", med("endpoint 1 p99"), med("floor p99"), "ms")
    row("  req/s at 1", med("endpoint 1 rate"), med("floor rate"), "/s")
    row("  CPU/request: server (floor: client)", med("endpoint 1 cpu server"),
        med("floor cpu client"), "ms")  # fmt: skip
    row("  CPU/request: emulator", med("endpoint 1 cpu emulator"), med("floor cpu emulator"), "ms")
    row("  the reference's p50 at 1 (vs floor)", med("reference 1 p50"), med("floor p50"), "ms")
    row("  the reference's CPU/request: server", med("reference 1 cpu server"),
        med("floor cpu client"), "ms")  # fmt: skip
    if r.errors["endpoint 1"] or r.errors["reference 1"]:
        errors_row(1)
    for level in LEVELS[1:]:
        errors = r.errors[f"endpoint {level}"]
        row(f"req/s at {level} connections (vs ref.)", med(f"endpoint {level} rate"),
            med(f"reference {level} rate"), "/s",
            target=(">= 0.90x, 0 errors", lambda x, e=errors: x >= 0.9 and e == 0))  # fmt: skip
        row(f"  p50 at {level}", med(f"endpoint {level} p50"), med(f"reference {level} p50"), "ms")
        row(f"  p99 at {level}", med(f"endpoint {level} p99"), med(f"reference {level} p99"), "ms")
        errors_row(level)
        for process in ("server", "emulator", "client"):
            row(f"  CPU/request: {process}", med(f"endpoint {level} cpu {process}"),
                med(f"reference {level} cpu {process}"), "ms")  # fmt: skip
    row("first 200 after spawn (vs ref.)", med("endpoint first 200"),
        med("reference first 200"), "ms", target=("<= 1.25x", lambda x: x <= 1.25),
        digits=0)  # fmt: skip
    row("  spawn to socket listening", med("endpoint listening"),
        med("reference listening"), "ms", digits=0)  # fmt: skip
    row("  then the first request", med("endpoint first request"),
        med("reference first request"), "ms", digits=0)  # fmt: skip
    answered, reference_answered = int(m["answered"]), int(m["reference answered"])
    row(f"PSS after {answered} requests (ref.: {reference_answered})", mb(m["pss"]),
        mb(m["reference_pss"]), "MB", target=("<= 100 MB", lambda x: x <= 100),
        check=mb(m["pss"]))  # fmt: skip
    row("  the same in MiB", m["pss"] / 1024, m["reference_pss"] / 1024, "MiB")
    row(f"RSS after {answered} requests", mb(m["rss"]), mb(m["reference_rss"]), "MB")
    row(f"  PSS after {int(m['warm_answered'])} requests", mb(m["warm_pss"]), None, "MB")
    rows.append(
        ("  errors, warm-up and top-up", str(r.errors["warm-up"]), "", "", "0",
         "PASS" if r.errors["warm-up"] == 0 else "MISS")
    )  # fmt: skip
    events_rows(events, row, rows)

    header = ("measure", "endpoint", "reference", "ratio", "target", "result")
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                  for i, (cell, w) in enumerate(zip(line, widths, strict=True))).rstrip()
        for line in [header, *rows]
    ]  # fmt: skip
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
