#!/usr/bin/env python3
"""Caps a target's checked-in corpus at 50 inputs, chosen for edge coverage.

    python3 fuzz/cap_corpus.py TARGET SCRATCH_DIR...

`cargo fuzz cmin` keeps every input that adds a feature (edge hit counts included): after a
five-minute run that is hundreds of files. This keeps the current corpus's named inputs
(seeds and findings: any name that is not a 40-hex-digit hash), then adds, greedily, the
input that covers the most edges not yet covered, up to 50. Run it from the repository root
after `cargo +nightly fuzz build -s none -a`; it rewrites fuzz/corpus/TARGET.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

LIMIT = 50
BIN = "fuzz/target/x86_64-unknown-linux-gnu/release/{}"


def edges(binary, path, work):
    """The edges one input covers: a merge of that input alone lists them all."""
    single = os.path.join(work, "single")
    shutil.rmtree(single, ignore_errors=True)
    os.makedirs(single)
    shutil.copy(path, single)
    control = os.path.join(work, "control")
    if os.path.exists(control):
        os.remove(control)  # an existing control file would resume the previous merge
    out = tempfile.mkdtemp(dir=work)
    subprocess.run(
        [binary, "-merge=1", "-use_counters=0", f"-merge_control_file={control}", out, single],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    with open(control) as f:
        for line in f:
            if line.startswith("COV "):
                return set(line.split()[2:])
    return set()


def main():
    target, scratch = sys.argv[1], sys.argv[2:]
    binary = BIN.format(target)
    corpus = os.path.join("fuzz/corpus", target)
    with tempfile.TemporaryDirectory() as work:
        merged = os.path.join(work, "merged")
        os.makedirs(merged)
        # Edges only (no hit counts): one input per new edge, smallest first.
        subprocess.run([binary, "-merge=1", "-use_counters=0", merged, corpus, *scratch],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        named = [os.path.join(corpus, n) for n in sorted(os.listdir(corpus))
                 if not re.fullmatch(r"[0-9a-f]{40}", n)]
        candidates = named + [os.path.join(merged, n) for n in sorted(os.listdir(merged))]
        cover = {path: edges(binary, path, work) for path in candidates}
        chosen, covered = list(named), set().union(set(), *(cover[p] for p in named))
        while len(chosen) < LIMIT:
            best = max(cover, key=lambda p: (len(cover[p] - covered), -os.path.getsize(p)))
            if not cover[best] - covered:
                break
            chosen.append(best)
            covered |= cover[best]
        keep = os.path.join(work, "keep")
        os.makedirs(keep)
        for path in chosen:
            shutil.copy(path, keep)
        shutil.rmtree(corpus)
        shutil.copytree(keep, corpus)
        total = set().union(*cover.values())
        print(f"{target}: {len(chosen)} inputs cover {len(covered)} of {len(total)} edges")


if __name__ == "__main__":
    main()
