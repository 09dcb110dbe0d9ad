"""Reading Vivado's post-route ``report_timing_summary`` (UG906 layout): did the design meet timing?

Vivado writes a bitstream whether or not timing is met, so the Arty build reads the report
LiteX has Vivado write after routing (``<build>_timing.rpt``) and refuses a build whose
worst negative slack (setup or hold) or total negative slack is below zero, naming the
worst path and its slack.
"""
import dataclasses
import re
from pathlib import Path

SUMMARY_COLUMNS = ("WNS", "TNS", "TNS failing", "TNS endpoints", "WHS", "THS", "THS failing",
                   "THS endpoints", "WPWS", "TPWS", "TPWS failing", "TPWS endpoints")


class VivadoReportError(RuntimeError):
    """The file is not a timing summary this parser understands."""


class TimingNotMet(RuntimeError):
    """The routed design misses timing; the message names the worst path and its slack."""


@dataclasses.dataclass(frozen=True)
class PathSlack:
    slack_ns: float
    kind: str                 # "Setup" or "Hold"
    source: str
    destination: str
    group: str = ""

    def __str__(self):
        return (f"{self.kind} slack {self.slack_ns:+.3f} ns from {self.source} to {self.destination}"
                + (f" (clock {self.group})" if self.group else ""))


@dataclasses.dataclass(frozen=True)
class TimingSummary:
    wns: float                # worst negative (setup) slack, ns
    tns: float                # total negative setup slack, ns
    failing_endpoints: int
    whs: float                # worst hold slack, ns
    ths: float
    paths: tuple              # the detailed paths of the report, worst first

    @property
    def met(self):
        return min(self.wns, self.tns, self.whs, self.ths) >= 0

    def worst(self, kind):
        return next((p for p in self.paths if p.kind == kind), None)

    def describe(self):
        text = (f"WNS {self.wns:+.3f} ns, TNS {self.tns:+.3f} ns ({self.failing_endpoints} failing endpoints), "
                f"WHS {self.whs:+.3f} ns, THS {self.ths:+.3f} ns")
        kind = "Setup" if min(self.wns, self.tns) < 0 or self.whs >= 0 else "Hold"
        worst = self.worst(kind)
        return text + (f"; worst path: {worst}" if worst else "")


def _number(text):
    return float(text) if text not in ("NA", "inf") else float("inf")


def _design_summary(text):
    m = re.search(r"\|\s*Design Timing Summary.*?^\s*WNS\(ns\).*?$\s*^\s*-[-\s]+$\s*^(.*?)$", text, re.S | re.M)
    if not m:
        raise VivadoReportError("no 'Design Timing Summary' table (WNS(ns) TNS(ns) ...): is this the "
                                "output of report_timing_summary?")
    values = m.group(1).split()
    if len(values) != len(SUMMARY_COLUMNS):
        raise VivadoReportError(f"the Design Timing Summary row has {len(values)} values, expected "
                                f"{len(SUMMARY_COLUMNS)}: {m.group(1).strip()!r}")
    return dict(zip(SUMMARY_COLUMNS, values))


_PATH = re.compile(
    r"^Slack(?:\s*\((?:MET|VIOLATED)\))?\s*:\s*(-?[\d.]+|inf)ns.*?$"
    r".*?^\s*Source:\s*(\S+).*?^\s*Destination:\s*(\S+)"
    r".*?^\s*Path Group:\s*(\S+).*?^\s*Path Type:\s*(Setup|Hold)", re.S | re.M)


def parse_timing_summary(text):
    """The TimingSummary of a report_timing_summary text."""
    row = _design_summary(text)
    paths = sorted((PathSlack(_number(slack), kind, src, dst, group)
                    for slack, src, dst, group, kind in _PATH.findall(text)), key=lambda p: p.slack_ns)
    return TimingSummary(wns=_number(row["WNS"]), tns=_number(row["TNS"]),
                         failing_endpoints=int(row["TNS failing"]), whs=_number(row["WHS"]),
                         ths=_number(row["THS"]), paths=tuple(paths))


def check_timing(report):
    """The TimingSummary of a report file; raises TimingNotMet when any slack is negative."""
    report = Path(report)
    if not report.exists():
        raise VivadoReportError(f"no timing report {report}: did Vivado finish routing?")
    summary = parse_timing_summary(report.read_text(errors="replace"))
    if not summary.met:
        raise TimingNotMet(f"the routed design misses timing ({report.name}): {summary.describe()}")
    return summary
