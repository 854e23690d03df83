#!/usr/bin/env python3
"""Heap bytes per connection by allocation site: the difference between two massif
detailed snapshots (before and after opening N connections), divided by N.

usage: massif_sites.py BEFORE AFTER N [TOP]

Each leaf of massif's allocation tree is keyed by its first two frames that name code
of the program or its libraries (allocator, closure and runtime frames skipped) and the
first of gatehouse's own, so the same site in both snapshots lines up. Prints the TOP (15) sites that grew, then the total.
"""
import re
import sys

FRAME = re.compile(r"^( *)n(\d+): (\d+) (.*)$")
# Frames that say nothing about who allocated: the allocator, generic containers, closures
# and the runtime's polling machinery.
GENERIC = re.compile(
    r"UnknownInlinedFun|alloc::|raw_vec|with_capacity|reserve_inner|__rust|^alloc |allocate|"
    r"alloc_impl|box_new|\{closure|catch_unwind|call_once|do_call|poll_future|poll_inner|"
    r"with_budget|budget<|^enter|run_task|^set<|try_with|LocalKey|block_on|enter_runtime|"
    r"FnOnce|thread::|start_thread|clone \(|raw::poll|with_mut|Pin<P>|PollFn|\{async|^poll<|"
    r"Stage<|grow|realloc|^new<|^default|^reserve|heap allocation functions|task::core::Cell|"
    r"Handle::spawn|spawn::spawn|spawn_inner|^spawn<")


def sites(path):
    """Bytes by site key in the (last) detailed snapshot of a massif file."""
    lines = open(path).read().split("\n")
    start = max(i for i, line in enumerate(lines) if line == "heap_tree=detailed")
    total, stack = {}, []
    for line in lines[start + 1:]:
        m = FRAME.match(line)
        if not m:
            break
        depth, children, size, text = len(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)
        text = re.sub(r"^0x[0-9A-F]+: ", "", text)
        stack = stack[:depth] + [text]
        if children == 0:  # a leaf: an allocation site, or massif's "below threshold" rest
            named = [re.sub(r" \(in [^)]*\)", "", f) for f in stack
                     if not GENERIC.search(f) and "below massif" not in f]
            ours = [f for f in named[2:] if "gatehouse::" in f][:1]
            key = " <- ".join(f[:90] for f in named[:2] + ours) or stack[-1][:90]
            total[key] = total.get(key, 0) + size
    return total


def main():
    before, after, n = sites(sys.argv[1]), sites(sys.argv[2]), int(sys.argv[3])
    top = int(sys.argv[4]) if len(sys.argv) > 4 else 15
    grown = {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)}
    for key, size in sorted(grown.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{size / n:9.0f} B/conn  {key}")
    print(f"{sum(grown.values()) / n:9.0f} B/conn  in all ({n} connections)")


if __name__ == "__main__":
    main()
