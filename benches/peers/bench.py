"""Side-by-side throughput of the peers: load once, warm up, then alternate, as benchmarks.md asks.

    python3 benches/peers/bench.py --records 1000000 [--runs 5] [--peers spark,flink]
                                   [--workloads W2,W3,W3k,W6] [--out results.jsonl]

Standard library only (each peer runs in its own venv). Loads the topic with load.py if it does
not hold --records records, runs one warm-up round and --runs rounds of every peer x workload in
turn (one at a time), appends every JSON line to --out, and prints a Markdown table of medians.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("WEIR_PEERS_CACHE", os.path.expanduser("~/.cache/weir/peers"))


def python_of(peer):
    # weir's driver script runs in either peer's venv (it needs confluent-kafka and psutil).
    if peer == "weir":
        peer = next(p for p in ("spark", "flink") if os.path.exists(python_of(p)))
    return os.path.join(CACHE, peer, "venv", "bin", "python")


def run(command):
    out = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--records", type=int, required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--peers", default="weir,spark,flink")
    ap.add_argument("--workloads", default="W2,W3,W3k,W6")
    ap.add_argument("--topic", default="peers_json")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--out", default="peers-results.jsonl")
    args = ap.parse_args()
    peers, workloads = args.peers.split(","), args.workloads.split(",")

    loader = [python_of(peers[0]), os.path.join(HERE, "load.py")]
    subprocess.run(
        [*loader, "--topic", args.topic, "--records", str(args.records), "--partitions", str(args.partitions)],
        check=True,
    )
    results = {}
    with open(args.out, "a") as out:
        for round_ in range(args.runs + 1):
            for peer in peers:
                for workload in workloads:
                    script = os.path.join(HERE, f"{peer}_peer.py")
                    r = run([python_of(peer), script, "--workload", workload, "--topic", args.topic])
                    r["round"] = round_
                    out.write(json.dumps(r) + "\n")
                    out.flush()
                    if round_ > 0:
                        results.setdefault((peer, workload), []).append(r)
            print(f"round {round_} of {args.runs} done{' (warm-up)' if round_ == 0 else ''}", file=sys.stderr)

    def summary(rows, key):
        values = [r[key] for r in rows]
        return f"{statistics.median(values):.0f} ({min(values):.0f}–{max(values):.0f})"

    print("\n| peer | workload | records per CPU-s, whole run | records per CPU-s, query only | records/s, query only |")
    print("|---|---|---|---|---|")
    for (peer, workload), rows in results.items():
        print(
            f"| {peer} {rows[0]['version']} | {workload} | {summary(rows, 'records_per_cpu_s')} | "
            f"{summary(rows, 'query_records_per_cpu_s')} | {summary(rows, 'query_records_per_s')} |"
        )
    if not results:
        return
    last = rows[-1]
    print(f"\n{args.records} records, {args.runs} runs, {last['cores']} cores, load average (last run) {last['loadavg']}")


if __name__ == "__main__":
    main()
