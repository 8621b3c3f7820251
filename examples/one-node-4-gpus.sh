#!/bin/bash
# Four shards on one 4-GPU machine without a scheduler: each takes its own GPU by shard
# index (--gpus-per-shard 1), each writes its own store; then one report.
# A shard that holds a model needing several GPUs (the 90B or 70B model) needs a bigger
# slice: use --gpus-per-shard 2 on an 8-GPU node, or run those shards alone.
set -euo pipefail
for i in 0 1 2 3; do
  ptychobench run paper --out runs/paper --shard "$i/4" --gpus-per-shard 1 > "runs/paper-shard$i.log" 2>&1 &
done
wait
ptychobench report runs/paper
