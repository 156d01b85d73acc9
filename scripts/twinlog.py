"""What speed-summary.py and precision-summary.py read from the PyTorch
twin's logs (bench/pytorch/speed.py): its JSON rows, and which of its
placements matches each of ours."""

import json
import sys

# Our --gpus placement -> the twin's placement that it is compared with.
TWIN = {"0": "cuda:0", "0,0": "cuda:0", "0,1": "cuda:0,cuda:1", "cpu": "cpu", "cpu,cpu": "cpu"}


def pytorch_rows(paths, tool):
    """The twin's JSON rows (impl "pytorch") in the logs at paths; a log
    that cannot be read is named on stderr, prefixed with tool, and skipped."""
    for path in paths:
        try:
            lines = open(path).read().splitlines()
        except OSError as e:
            print("%s: %s" % (tool, e), file=sys.stderr)
            continue
        for line in lines:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("impl") == "pytorch":
                yield r
