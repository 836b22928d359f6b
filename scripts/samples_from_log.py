"""Put a killed `perfbench calibrate` run's kernel-family samples, recovered from its log, into a copy
of a calibration file (perfbench/calibration/from_log.py says how), ready for
`perfbench calibrate --refit COPY --out NEW`.

    PYTHONPATH=$PWD python3 scripts/samples_from_log.py LOG --into analytic/calibrations/h100.json.gz \
        --out /tmp/h100-recovered.json.gz --created 2026-12-07T12:52:41Z
"""

from __future__ import annotations

import argparse
import sys

from analytic.calibration import read_calibration_data, write_calibration_data
from perfbench.calibration.from_log import recover_samples, with_recovered
from perfbench.errors import USER_ERRORS, PerfbenchError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", help="the killed run's log")
    parser.add_argument("--into", required=True, help="the calibration file the run was re-measuring into")
    parser.add_argument("--out", required=True, help="where the copy with the recovered samples goes")
    parser.add_argument("--created", required=True, help="when the run measured (UTC, ISO 8601)")
    args = parser.parse_args(argv)
    try:
        with open(args.log) as f:
            recovered = recover_samples(f.read().splitlines())
        if not recovered:
            raise PerfbenchError(f"{args.log}: no kernel family's samples in it")
        data = with_recovered(read_calibration_data(args.into), recovered, args.created, args.log)
        write_calibration_data(args.out, data)
    except (*USER_ERRORS, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for r in recovered:
        print(f"{r.family}: {r.logged} samples recovered, {r.missing} never logged (run killed), "
              f"{r.dropped} not shown in the log (dropped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
