"""Write a Markdown report from the per-region Loop's outputs (argv[1], JSON) to argv[2]."""

import json
import sys

iterations = json.loads(sys.argv[1])
rows = [row for iteration in iterations for row in iteration["data"]]
lines = ["# Sales per region", "", "| region | orders | total |", "| --- | ---: | ---: |"]
lines += [f"| {r['region']} | {r['orders']} | {r['total']:.2f} |" for r in rows]
lines += ["", f"{sum(r['orders'] for r in rows)} orders, "
              f"{sum(r['total'] for r in rows):.2f} in total", ""]
with open(sys.argv[2], "w", encoding="utf-8") as report:
    report.write("\n".join(lines))
print(f"wrote {sys.argv[2]}: {len(rows)} regions")
