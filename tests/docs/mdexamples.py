"""The code blocks of README.md and docs/*.md, and how each is run as a test.

A fenced block in one of RUNNABLE languages is an example and runs, unless the HTML comment
on the line before it says otherwise:

    <!-- example: run -->                            run in the default suite (the default)
    <!-- example: skip needs an Arty A7 on USB -->   not run; the reason is the skip's
    <!-- example: slow -->                           run in the slow tier (--runslow)
    <!-- example: pytest -->                         a test file: run by pytest on the sim
    <!-- example: needs cnn -->                      the suite's trained model of that name first
    <!-- example: output -->                         (before a text block) the output of the
                                                     example above it: each line must appear

Markers combine with commas: ``<!-- example: slow, needs cnn -->``; a skip's reason is the
rest of the comment. In a ``console`` block,
lines starting with ``$ `` are commands and the lines after one are its expected output.
"""
import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUNNABLE = {"python", "console", "sh", "bash", "shell"}
FENCE = re.compile(r"^```(\w*)[^\n]*$")
MARKER = re.compile(r"^<!--\s*example:\s*(.*?)\s*-->$")


@dataclass
class Example:
    path: Path
    line: int                    # of the opening fence, 1-based
    lang: str
    code: str
    skip: str = ""               # the reason, if not run
    slow: bool = False
    pytest: bool = False
    needs: list = field(default_factory=list)
    expected: list = field(default_factory=list)     # lines that must appear in the output

    @property
    def id(self):
        return f"{self.path.relative_to(REPO)}:{self.line}"

    def commands(self):
        """A console block's commands, and the output lines it shows, as one script."""
        if self.lang != "console":
            return self.code, []
        cmds, out = [], []
        for line in self.code.splitlines():
            if line.startswith("$ "):
                cmds.append(line[2:])
            elif line.strip():
                out.append(line.strip())
        return "\n".join(cmds), out


def _parse_marker(text):
    opts = {"skip": "", "slow": False, "pytest": False, "needs": [], "output": False}
    if text.startswith("skip "):           # the reason is the rest, commas and all
        opts["skip"] = text[5:].strip()
        return opts
    for part in (p.strip() for p in text.split(",")):
        word, _, rest = part.partition(" ")
        if word == "skip":
            if not rest:
                raise ValueError("'skip' needs a reason")
            opts["skip"] = rest
        elif word in ("slow", "pytest", "output"):
            opts[word] = True
        elif word == "run" and not rest:      # the default, said out loud
            pass
        elif word == "needs" and rest:
            opts["needs"].append(rest)
        else:
            raise ValueError(f"unknown example marker {part!r}")
    return opts


def blocks(path):
    """Every fenced block of a Markdown file: (line, language, code, marker options or None)."""
    lines = path.read_text().splitlines()
    i, out = 0, []
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        k = i - 1
        marker = MARKER.match(lines[k].strip()) if k >= 0 else None
        try:
            opts = _parse_marker(marker.group(1)) if marker else None
        except ValueError as e:
            raise ValueError(f"{path}:{i}: {e}") from None
        out.append((i + 1, m.group(1), "\n".join(lines[i + 1:j]), opts))
        i = j + 1
    return out


def examples(paths):
    found = []
    for path in paths:
        for line, lang, code, opts in blocks(path):
            if opts and opts["output"]:
                if not found or found[-1].path != path:
                    raise ValueError(f"{path}:{line}: an output block with no example before it")
                found[-1].expected += [l.strip() for l in code.splitlines() if l.strip()]
                continue
            if lang not in RUNNABLE:
                continue
            opts = opts or {}
            found.append(Example(path, line, lang, code, opts.get("skip", ""), opts.get("slow", False),
                                 opts.get("pytest", False), opts.get("needs", [])))
    return found


def documents():
    return [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
