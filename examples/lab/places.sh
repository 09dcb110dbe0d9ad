#!/bin/sh
# Once, on any host that reaches the coordinator: one place per board, matching its exporter group.
# LG_COORDINATOR=lab.example:20408 sh examples/lab/places.sh
set -e
for board in arty-1 arty-2; do
  labgrid-client -p "$board" create
  labgrid-client -p "$board" add-match "lab-host-1/$board/*"
done
