#!/usr/bin/env bash
# capacity: BENCH_CAPACITY_CONNS (50000) mostly idle connections on a
# fresh server with BENCH_CAPACITY_WORKERS workers (default: enough for
# 15000 connections each, at least 2), from several source addresses and
# client processes, in rooms of BENCH_CAPACITY_ROOM_SIZE (50). A trickle
# (one sender per 2500 connections at 1/s) checks the connections are alive.
# Figures: connections held, server memory per connection (RSS and PSS,
# master and workers, after connecting minus before), connect rate.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init capacity

conns=${BENCH_CAPACITY_CONNS:-50000}
room_size=${BENCH_CAPACITY_ROOM_SIZE:-50}
workers=${BENCH_CAPACITY_WORKERS:-$(((conns + 14999) / 15000 > 2 ? (conns + 14999) / 15000 : 2))}
rooms=$(((conns + room_size - 1) / room_size))
senders=$(((conns + 2499) / 2500))
# Connecting is cheaper for the client the fewer connections share a
# source address (the kernel searches the 4-tuples for a free port).
addrs=$(((conns + 4999) / 5000))

bench_server_start "$workers"
bench_run "capacity-$conns" --conns "$conns" --rooms "$rooms" --senders "$senders" --rate 1 \
    --procs "$(bench_procs "$conns")" --source-addrs "$addrs" --connect-concurrency 512 \
    --connect-timeout 60
j=$BENCH_JSON
bench_result "$(jget "$j" connections_made) of $conns connections held ($(jget "$j" connections_failed) failed, $(jget "$j" conns_dropped) dropped; $workers workers, $addrs source addresses); server RSS $(jnum "$j" server.rss_kb_per_conn 2) KB/conn, PSS $(jnum "$j" server.pss_kb_per_conn 2) KB/conn; connect $(jnum "$j" connect_per_s)/s (p99 $(jnum "$j" connect_ms.p99 1) ms); trickle delivery ratio $(jnum "$j" delivery_ratio 4)"
