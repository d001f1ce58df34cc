#!/bin/bash
# Graph tables (docs/results/graph.md): the IREM GNN energy and both GNN baselines on shortest path and
# connectivity, 1500 iterations each at batch 128, evaluated on 200 graphs per split at 10..50 nodes.
# Two lanes share the work: run `benchmarks/graph_tables.sh fwd & benchmarks/graph_tables.sh rev`.
cd "$(dirname "$0")/.."
T="$(dirname "$(command -v python)")/irem-train"
mkdir -p runs/graph
COMMON="trainer.iterations=1500 trainer.batch_size=128 trainer.checkpoint_every=250 task.test_size=200 eval.splits=[test,harder,harder_20,harder_30,harder_50] eval.budgets=[1,5,10,20,40,80] threads=1 trainer.progress=false"
ORDER="$1"
jobs="shortest_path:energy shortest_path:gnn_feedforward shortest_path:gnn_recurrent connectivity:energy connectivity:gnn_feedforward connectivity:gnn_recurrent"
[ "$ORDER" = rev ] && jobs=$(echo $jobs | tr ' ' '\n' | tac | tr '\n' ' ')
for j in $jobs; do
  t=${j%%:*}; m=${j##*:}; d=runs/graph/$t-$m
  mkdir runs/graph/.lock-$t-$m 2>/dev/null || continue   # another lane has it
  extra=""; [ $m != energy ] && extra="baseline=$m"
  $T experiment=irem_graph_$t name=graph-$t-$m hydra.run.dir=$d $COMMON $extra > $d.log 2>&1
  echo "done $t $m rc=$?"
done
