#!/usr/bin/env python3
"""Where a running process's resident memory is: bench/memory.py PID

Prints the main heap, glibc's thread arenas (anonymous mappings aligned to 64 MiB, the
size of an arena's heap), the other anonymous mappings (large allocations that malloc
mmaps on their own, thread stacks) with the largest listed, the file-backed total, and
VmHWM / VmRSS / threads from /proc/PID/status. Used for docs/performance.md "Memory".
"""
import sys, re
pid = sys.argv[1]
maps = []
cur = None
for line in open(f"/proc/{pid}/smaps"):
    m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
    if m:
        cur = {"start": int(m.group(1), 16), "end": int(m.group(2), 16), "perm": m.group(3), "name": m.group(4).strip()}
        maps.append(cur)
    elif cur is not None and line.startswith("Rss:"):
        cur["rss"] = int(line.split()[1])
HEAP = 64 << 20
arenas = [m for m in maps if m["name"] == "" and m["perm"].startswith("rw") and m["start"] % HEAP == 0 and m["end"] - m["start"] <= HEAP]
heap = [m for m in maps if m["name"] == "[heap]"]
anon = sum(m.get("rss", 0) for m in maps if m["name"] in ("", "[heap]", "[stack]"))
files = sum(m.get("rss", 0) for m in maps if m["name"].startswith("/"))
small_anon = [m for m in maps if m["name"] == "" and m not in arenas]
print(f"main heap {sum(m.get('rss',0) for m in heap)/1024:.1f} MiB; {len(arenas)} thread arenas, rss "
      f"{sum(m.get('rss',0) for m in arenas)/1024:.1f} MiB ({', '.join(str(round(m.get('rss',0)/1024,1)) for m in sorted(arenas, key=lambda m:-m.get('rss',0)))}); "
      f"other anon {sum(m.get('rss',0) for m in small_anon)/1024:.1f} MiB in {len(small_anon)} maps; file-backed {files/1024:.1f} MiB")
st = open(f"/proc/{pid}/status").read()
for k in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "Threads"):
    print(re.search(rf"^{k}:\s*(.*)$", st, re.M).group(0))
big = sorted(small_anon, key=lambda m: -m.get("rss", 0))[:8]
print("largest other anon maps (MiB rss / size):", ", ".join(f"{m.get('rss',0)/1024:.1f}/{(m['end']-m['start'])/2**20:.1f}" for m in big))
