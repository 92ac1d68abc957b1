"""Does every COPY/ADD source of the Dockerfile survive .dockerignore?

A static check of the image's build context, run by .ci/ops-checks (no container engine
needed): it reads the Dockerfile and .dockerignore of the repository and the files git
tracks (what a clean checkout hands the builder), applies .dockerignore the way Docker does
(moby/patternmatcher: patterns in order, the last one matching a path or one of its parent
directories decides; `!` re-includes; `*` and `?` stop at `/`, `**` crosses directories) and
fails, one line per problem, when

- a COPY/ADD source matches no file left in the context (the build would stop there), or
- a symlink in a copied tree (daemon/share/ links to deploy/ and config/) points at a file
  that is left out of the context or that no COPY brings into the image.

    python3 .ci/build_context.py [REPO]      # exit 0 when the context is complete, else 1
    python3 .ci/build_context.py --export DIR [REPO]   # lay out the build stage's WORKDIR
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as an anchored regex (moby/patternmatcher's translation)."""
    out = "^"
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern[i + 1 : i + 2] == "*":
                i += 1
                if pattern[i + 1 : i + 2] == "/":
                    i += 1
                out += ".*" if i + 1 >= len(pattern) else "(.*/)?"
            else:
                out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out += re.escape(ch)
            else:
                body = pattern[i + 1 : end]
                body = "^" + body[1:] if body.startswith("!") else body
                out += "[" + body + "]"
                i = end
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out + "$")


def read_ignore(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(exclusion?, regex) per pattern line of a .dockerignore, in order."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        line = line[1:].strip() if negate else line
        line = posixpath.normpath(line).lstrip("/")
        rules.append((not negate, _pattern_regex(line)))
    return rules


def excluded(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker leaves ``path`` (relative, with /) out of the build context."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for exclusion, regex in rules:
        if any(regex.match(c) for c in candidates):
            result = exclusion
    return result


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        pending += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            logical.append(pending)
            pending = ""
    return [(h.upper(), r.strip()) for h, _, r in (s.partition(" ") for s in logical)]


def copy_sources(dockerfile: str) -> list[tuple[str, str]]:
    """(instruction text, source) for every COPY/ADD source read from the build context."""
    sources = []
    for name, args in instructions(dockerfile):
        if name not in {"COPY", "ADD"}:
            continue
        words = json.loads(args) if args.startswith("[") else args.split()
        flags = [w for w in words if w.startswith("--")]
        if any(f.startswith("--from=") for f in flags):
            continue  # from another stage or image, not from the context
        paths = [w for w in words if not w.startswith("--")]
        sources += [(f"{name} {args}", src) for src in paths[:-1]]
    return sources


def _under(path: str, source: str) -> bool:
    src = posixpath.normpath(source).lstrip("/")
    if src == ".":
        return True
    if any(ch in src for ch in "*?["):
        return any(
            _pattern_regex(src).match("/".join(path.split("/")[: i + 1]))
            for i in range(len(path.split("/")))
        )
    return path == src or path.startswith(src + "/")


def check(repo: Path, files: Iterable[str]) -> list[str]:
    """Problems with the build context of ``repo`` (empty: every COPY source is there)."""
    rules = read_ignore((repo / ".dockerignore").read_text(encoding="utf-8"))
    tracked = sorted(files)
    context = [f for f in tracked if not excluded(f, rules)]
    sources = copy_sources((repo / "Dockerfile").read_text(encoding="utf-8"))
    problems = []
    for instruction, source in sources:
        if not any(_under(f, source) for f in context):
            problems.append(
                f"{source}: left out of the build context by .dockerignore ({instruction})"
            )
    copied = [f for f in context if any(_under(f, s) for _, s in sources)]
    for link in copied:
        if not (repo / link).is_symlink():
            continue
        target = posixpath.normpath(
            posixpath.join(posixpath.dirname(link), os.readlink(repo / link))
        )
        if target not in context:
            problems.append(f"{link} -> {target}: the target is left out of the build context")
        elif target not in copied:
            problems.append(f"{link} -> {target}: no COPY brings the target into the image")
    return problems


def copies(dockerfile: str) -> list[tuple[str, str]]:
    """(source, destination) of each context COPY/ADD; destinations relative to WORKDIR."""
    pairs = []
    for name, args in instructions(dockerfile):
        words = json.loads(args) if args.startswith("[") else args.split()
        if name not in {"COPY", "ADD"} or any(w.startswith("--from=") for w in words):
            continue
        paths = [w for w in words if not w.startswith("--")]
        pairs += [(src, paths[-1]) for src in paths[:-1]]
    return pairs


def export(repo: Path, files: Iterable[str], into: Path) -> None:
    """Lay out in ``into`` what the build stage's COPY lines put in its WORKDIR (no wildcards)."""
    rules = read_ignore((repo / ".dockerignore").read_text(encoding="utf-8"))
    context = [f for f in files if not excluded(f, rules)]
    for source, destination in copies((repo / "Dockerfile").read_text(encoding="utf-8")):
        src = posixpath.normpath(source)
        for name in context:
            if name == src:
                dest = posixpath.join(destination, posixpath.basename(src))
                dest = dest if destination.endswith("/") else destination
            elif name.startswith(src + "/"):
                dest = posixpath.join(destination, name[len(src) + 1 :])
            else:
                continue
            target = into / posixpath.normpath(dest)
            target.parent.mkdir(parents=True, exist_ok=True)
            if (repo / name).is_symlink():
                target.symlink_to(os.readlink(repo / name))
            else:
                shutil.copyfile(repo / name, target)


def main(argv: list[str]) -> int:
    args = argv[1:]
    into = None
    if args[:1] == ["--export"]:
        into, args = Path(args[1]), args[2:]
    repo = Path(args[0] if args else ".").resolve()
    listing = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z"], check=True, capture_output=True, text=True
    ).stdout
    files = [f for f in listing.split("\0") if f]
    if into is not None:
        export(repo, files, into)
        return 0
    problems = check(repo, files)
    for problem in problems:
        print(f"build context: {problem}", file=sys.stderr)
    if not problems:
        print("build context: every COPY/ADD source of the Dockerfile survives .dockerignore")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
