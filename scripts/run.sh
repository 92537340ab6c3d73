#!/usr/bin/env bash
# `make run`: PostgreSQL, the Rondo server, the example worker and one example workflow.
#
# With no RONDO_DATABASE_URL, PostgreSQL is a private cluster under .data/pg (port 55432 unless
# RONDO_DEV_DB_PORT says otherwise), created on first use and kept for the next run. Ctrl-C stops
# the worker, the server and that cluster; its data stays.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly DEV_DB_DIR=.data/pg
readonly DEV_DB_PORT=${RONDO_DEV_DB_PORT:-55432}
readonly LOG_DIR=.data/logs
readonly GRPC_ADDR=127.0.0.1:7233
readonly HTTP_ADDR=127.0.0.1:9233
readonly SERVER_URL=http://$GRPC_ADDR
readonly RONDO=target/debug/rondo
readonly WORKER=target/debug/rondo-example-worker

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# What cleanup has to stop; filled in as things start.
server_pid=""
worker_pid=""
own_cluster=false

# Stops what this script started, newest first. The server and the worker run in sessions of
# their own (setsid), so they see only this SIGTERM, not the terminal's Ctrl-C as well: a
# second signal would make the server skip its graceful shutdown.
# shellcheck disable=SC2329 # run by the EXIT trap
cleanup() {
    trap - EXIT INT TERM
    local pid
    for pid in $worker_pid $server_pid; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if $own_cluster; then
        "$RONDO" dev-db --dir "$DEV_DB_DIR" --stop || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until the server answers, or fails with the end of its log.
wait_for_server() {
    local deadline=$((SECONDS + 60))
    until "$RONDO" --server "$SERVER_URL" graph list >/dev/null 2>&1; do
        if ! kill -0 "$server_pid" 2>/dev/null; then
            say "the server exited; the end of $LOG_DIR/server.log:"
            tail -n 20 "$LOG_DIR/server.log" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            say "the server did not answer on $SERVER_URL within 60s; see $LOG_DIR/server.log"
            exit 1
        fi
        sleep 0.2
    done
}

say "building rondo and the example worker"
cargo build --bin rondo --bin rondo-example-worker

if [[ -z ${RONDO_DATABASE_URL:-} ]]; then
    say "starting the private PostgreSQL cluster in $DEV_DB_DIR"
    own_cluster=true
    RONDO_DATABASE_URL=$("$RONDO" dev-db --dir "$DEV_DB_DIR" --port "$DEV_DB_PORT")
fi
export RONDO_DATABASE_URL
say "database: $RONDO_DATABASE_URL"
"$RONDO" migrate

mkdir -p "$LOG_DIR"
say "starting the server on $GRPC_ADDR (HTTP $HTTP_ADDR); log: $LOG_DIR/server.log"
setsid "$RONDO" serve --listen "$GRPC_ADDR" --http-listen "$HTTP_ADDR" >"$LOG_DIR/server.log" 2>&1 &
server_pid=$!
wait_for_server

say "starting the example worker; log: $LOG_DIR/worker.log"
setsid "$WORKER" --server "$SERVER_URL" >"$LOG_DIR/worker.log" 2>&1 &
worker_pid=$!

say "applying the example graphs"
"$RONDO" --server "$SERVER_URL" graph apply example-worker/graphs/*.yaml

say "starting an order workflow"
started=$("$RONDO" --server "$SERVER_URL" workflow start order --input '{"order_id":"A-1001","amount":4200}')
printf '%s\n' "$started"
workflow_id=$(grep -oE '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' <<<"$started" | head -n 1 || true)

stops="the worker and the server"
if $own_cluster; then
    stops="the worker, the server and the private PostgreSQL (its data is kept)"
fi
cat <<INFO

Rondo is running: gRPC $SERVER_URL, metrics and health on http://$HTTP_ADDR.
Watch it from another terminal:

    $RONDO workflow list
    $RONDO workflow history ${workflow_id:-ID}
    $RONDO inbox list
    tail -f $LOG_DIR/server.log $LOG_DIR/worker.log

Press Ctrl-C to stop $stops.
INFO

# Returns when the server or the worker exits, or when Ctrl-C runs the traps.
wait -n "$server_pid" "$worker_pid" || true
say "the server or the worker stopped; see $LOG_DIR/"
exit 1
