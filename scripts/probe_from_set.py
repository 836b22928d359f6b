"""Give a calibration file the host probe of a lease whose chains it holds but whose probe it lacks.

    python scripts/probe_from_set.py analytic/calibrations/h100.json.gz --set h100-new-mixers2 \
        --chains mamba3/prefill,mamba3/decode,gdn/prefill,gdn/decode

The new layers' host chains in the bundled H100 file were recovered from a lease's log (its calibrate
run was killed in the refit), so the file has no probe for them; the runs measured on that same lease
recorded the host in their manifests (`host`). This takes the median of those runs' probes and adds it to
the file's `host_probes` with `chains` (analytic/host_chain.with_probed_host then scales just those
chains by it). The set must come from the lease that timed the chains: say which in the commit.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytic.calibration import from_dict, read_calibration_data, write_calibration_data  # noqa: E402
from perfbench.errors import PerfbenchError  # noqa: E402
from perfbench.measure.host_probe import median_probe  # noqa: E402
from perfbench.measure.result_sets import named_set, set_manifests  # noqa: E402


def fail(message: str):
    """One line on stderr and exit 2, as the CLI answers bad input."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


def lease_probe(set_name: str, root: Path) -> dict:
    """The median of the probes the set's runs recorded, with the first run's CPU and when it was taken."""
    try:
        result_set = named_set(set_name, root)
    except PerfbenchError as exc:
        fail(str(exc))
    probes = [m["host"] for m in set_manifests(result_set) if isinstance(m.get("host"), dict)]
    if not probes:
        fail(f"the runs of {set_name} recorded no host probe")
    first = min(probes, key=lambda p: p.get("created", ""))
    return {**{k: first[k] for k in ("cpu_model", "cpus", "launch_device") if k in first}, **median_probe(probes),
            "created": first.get("created", ""), "from_runs_of": set_name, "runs": len(probes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("calibration", type=Path)
    parser.add_argument("--set", required=True, help="a bundled result set measured on the lease")
    parser.add_argument("--chains", required=True, help="the chains that lease timed, e.g. gdn/prefill,gdn/decode")
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args()
    data = read_calibration_data(args.calibration)
    chains = sorted(c.strip() for c in args.chains.split(",") if c.strip())
    missing = [c for c in chains if f"host/{c}" not in data.get("launch", {})]
    if missing:
        fail(f"{args.calibration} has no host chain {', '.join(missing)}")
    probe = {**lease_probe(args.set, args.results), "chains": chains}
    kept = [p for p in data.get("host_probes", []) if p.get("from_runs_of") != args.set]
    data = {**data, "host_probes": [*kept, probe]}
    from_dict(data, str(args.calibration))  # validate before writing
    write_calibration_data(args.calibration, data)
    print(f"{args.calibration}: probe of {args.set} ({probe['runs']} runs, launch_s {probe['launch_s']:.3g}) "
          f"for {', '.join(chains)}")


if __name__ == "__main__":
    main()
