#!/usr/bin/env python3
"""What docker/Dockerfile says an image target contains, for building it without Docker.

    dockerfile_image.py DOCKERFILE TARGET     prints one JSON object:
      {"release": "bookworm", "packages": [...], "user": "65532:65532", "workdir": "/tmp",
       "labels": {...}, "copies": [["/out/routine-load-worker", "/usr/local/bin/routine-load-worker"]],
       "expose": ["8040"], "entrypoint": [...]}

The testbed's image build (images.sh) takes everything from here, so the Dockerfile stays the one
description of an image. The runtime stages may only use the instructions this understands; any
other instruction, or an apt-get line it cannot read, is an error (the build would otherwise
quietly make a different image than `docker build`).
"""

import json
import re
import shlex
import sys

# Instructions of the runtime stages (FROM debian...-slim and those built on it) that are read.
KNOWN = {"FROM", "RUN", "USER", "WORKDIR", "LABEL", "COPY", "EXPOSE", "ENTRYPOINT", "ARG"}


def instructions(text):
    """(INSTRUCTION, argument) pairs, continuation lines joined, comments dropped."""
    out, cur = [], ""
    for line in text.splitlines():
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        word, _, rest = cur.partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    return out


def parse(text, target):
    args, stages, order = {}, {}, []
    stage = None
    for ins, arg in instructions(text):
        if ins == "ARG" and stage is None:
            k, _, v = arg.partition("=")
            args[k] = v
            continue
        if ins == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", arg, re.IGNORECASE)
            base = re.sub(r"\$\{(\w+)\}", lambda g: args.get(g.group(1), ""), m.group(1))
            stage = m.group(2) or base
            stages[stage] = {"base": base, "body": []}
            order.append(stage)
            continue
        stages[stage]["body"].append((ins, arg))
    if target not in stages:
        raise SystemExit(f"{target}: no such stage in the Dockerfile (stages: {', '.join(order)})")
    chain = []
    s = target
    while s in stages:
        chain.insert(0, s)
        s = stages[s]["base"]
    m = re.fullmatch(r"debian:(\w+)-slim", s)
    if not m:
        raise SystemExit(f"{target}: the runtime chain starts FROM {s}; images.sh builds only debian:<release>-slim")
    image = {"release": m.group(1), "packages": [], "user": "", "workdir": "", "labels": {},
             "copies": [], "expose": [], "entrypoint": []}
    for name in chain:
        for ins, arg in stages[name]["body"]:
            if ins not in KNOWN:
                raise SystemExit(f"{target}: stage {name}: {ins} is not understood by the testbed's image build")
            if ins == "RUN":
                pkgs = re.search(r"apt-get install\s+(.*?)(?:&&|$)", arg)
                rest = re.sub(r"apt-get (update|install\s+.*?(?=&&|$))|DEBIAN_FRONTEND=\S+|rm -rf /var/lib/apt/lists/\*|&&", "", arg)
                if not pkgs or rest.strip():
                    raise SystemExit(f"{target}: stage {name}: RUN {arg!r} is not an apt-get install the testbed can reproduce")
                image["packages"] += [p for p in pkgs.group(1).split() if not p.startswith("-")]
            elif ins == "USER":
                image["user"] = arg
            elif ins == "WORKDIR":
                image["workdir"] = arg
            elif ins == "LABEL":
                for item in shlex.split(arg):
                    k, _, v = item.partition("=")
                    image["labels"][k] = v
            elif ins == "COPY":
                parts = arg.split()
                src = [p for p in parts if not p.startswith("--")]
                image["copies"].append(src)
            elif ins == "EXPOSE":
                image["expose"] += arg.split()
            elif ins == "ENTRYPOINT":
                image["entrypoint"] = json.loads(arg)
    return image


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: dockerfile_image.py DOCKERFILE TARGET")
    with open(sys.argv[1]) as f:
        print(json.dumps(parse(f.read(), sys.argv[2])))
