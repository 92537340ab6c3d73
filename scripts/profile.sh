#!/usr/bin/env bash
# Profiles the bench's chain workload with perf, system-wide (PostgreSQL included).
#
# Builds rondo-bench in release with line tables and frame pointers, runs it with chain-heavy
# flags, records `perf record -e cpu-clock -a` from the moment the chain phase starts to the
# moment it ends (the bench announces its phases on stderr), then writes into docs/profiles/:
#   chains-<tag>.svg           flame graph of the rondo-bench process (server, workers, clients)
#   chains-<tag>-postgres.svg  flame graph of this run's PostgreSQL processes, by role
#   chains-<tag>.txt           summary: per-step PostgreSQL counters (pg_stat_database,
#                              pg_stat_wal) and syscalls (perf stat); share of samples by
#                              process and PostgreSQL role; Rust parts, buckets and top 25
#                              symbols; PostgreSQL buckets, phases and top symbols
# perf.data and the intermediate files stay in $CARGO_TARGET_DIR/profile/<tag>/.
#
# Usage: scripts/profile.sh [bench flags...]   (default: the chain-heavy flags below)
# Environment:
#   PROFILE_TAG        name of the outputs (default: today's date, plus -dwarf in dwarf mode)
#   PROFILE_FREQ       sampling frequency in Hz (default 499; 199 in dwarf mode)
#   PROFILE_CALLGRAPH  fp (default): frame pointers; cheap. Rust (built here with them) and
#                      Debian's PostgreSQL have them; glibc has not, so a sample whose leaf
#                      is in glibc (send, recv, malloc) loses its Rust callers.
#                      dwarf: unwinds through .eh_frame, glibc included, at a much higher
#                      recording cost (16 KiB of stack copied per sample) that perturbs the run.
#   PROFILE_SKIP_BUILD=1    reuse the binary already built
#   PROFILE_ANALYSE_ONLY=1  redo the outputs from the perf.data of an earlier run of that tag
#   CARGO_TARGET_DIR   build directory (default: ./target)
# Needs root (or kernel.perf_event_paranoid <= 0) for system-wide sampling.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly DEFAULT_FLAGS=(--workflows 200 --chains 3000 --latency-rounds 10 --pgbench-seconds 2)
readonly CALLGRAPH=${PROFILE_CALLGRAPH:-fp}
if [[ $CALLGRAPH == dwarf ]]; then readonly FREQ=${PROFILE_FREQ:-199}; else readonly FREQ=${PROFILE_FREQ:-499}; fi
if [[ $CALLGRAPH == dwarf ]]; then default_tag=$(date +%Y-%m-%d)-dwarf; else default_tag=$(date +%Y-%m-%d); fi
readonly TAG=${PROFILE_TAG:-$default_tag}
readonly OUT_DIR=docs/profiles
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
readonly WORK=$CARGO_TARGET_DIR/profile/$TAG
readonly BIN=$CARGO_TARGET_DIR/release/rondo-bench
readonly SVG=$OUT_DIR/chains-$TAG.svg
readonly PG_SVG=$OUT_DIR/chains-$TAG-postgres.svg
readonly SUMMARY=$OUT_DIR/chains-$TAG.txt
readonly TOP_RUST=25
readonly TOP_PG=30

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() {
    printf 'profile.sh: %s\n' "$*" >&2
    exit 1
}

# --- preconditions ---------------------------------------------------------------------------
for tool in perf inferno-collapse-perf inferno-flamegraph cargo awk ps; do
    command -v "$tool" >/dev/null 2>&1 || case $tool in
        perf) die "perf not found: install it (Debian: apt-get install linux-perf)" ;;
        inferno-*) die "$tool not found: cargo install inferno (and put ~/.cargo/bin on PATH)" ;;
        *) die "$tool not found" ;;
    esac
done
paranoid=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo 2)
if [[ $(id -u) -ne 0 && $paranoid -gt 0 ]]; then
    die "system-wide perf needs root or kernel.perf_event_paranoid <= 0 (it is $paranoid)"
fi
case $CALLGRAPH in
    fp) callgraph=(-g) ;;
    dwarf) callgraph=(--call-graph "dwarf,16384" --mmap-pages 16M) ;;
    *) die "PROFILE_CALLGRAPH must be fp or dwarf, not '$CALLGRAPH'" ;;
esac
if [[ $# -gt 0 ]]; then flags=("$@"); else flags=("${DEFAULT_FLAGS[@]}"); fi

bench_pid=""
perf_pid=""
stat_pids=()
# shellcheck disable=SC2329 # run by the EXIT trap
cleanup() {
    local pid
    for pid in "${stat_pids[@]}" $perf_pid $bench_pid; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -INT "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
}

# Waits until the bench's stderr shows $1; fails if the bench exits first.
await_line() {
    until grep -qF -- "$1" "$WORK/bench.err"; do
        kill -0 "$bench_pid" 2>/dev/null || {
            cat "$WORK/bench.err" >&2
            die "rondo-bench exited before printing '$1'"
        }
        sleep 0.2
    done
}

# Notes every process's title and parent: PostgreSQL names its roles there (walwriter, client
# backends, ...), and the throwaway cluster's postmaster names the bench's pid.
snapshot_processes() { ps -eo pid=,ppid=,args= >>"$WORK/ps.txt" || true; }

# PostgreSQL's own counters for the whole cluster (transactions, rows, WAL records, bytes,
# writes and syncs), one line; nothing when psql is missing or the cluster is not found.
readonly PG_COUNTERS="SELECT (SELECT sum(xact_commit) FROM pg_stat_database), \
(SELECT sum(xact_rollback) FROM pg_stat_database), (SELECT sum(tup_inserted) FROM pg_stat_database), \
(SELECT sum(tup_updated) FROM pg_stat_database), (SELECT sum(tup_fetched) FROM pg_stat_database), \
wal_records, wal_bytes, wal_write, wal_sync FROM pg_stat_wal"
pg_counters() {
    local port
    port=$(awk -v b="rondo-pg-$bench_pid-" 'index($0, b) && /bin\/postgres / && match($0, /port=[0-9]+/) { print substr($0, RSTART + 5, RLENGTH - 5); exit }' "$WORK/ps.txt")
    [[ -n $port ]] && command -v psql >/dev/null 2>&1 || return 0
    psql "postgresql://postgres@127.0.0.1:$port/postgres" -XAtq -F ' ' -c "$PG_COUNTERS" 2>/dev/null || true
}

# Counts syscalls of the bench process and of this run's client backends (perf stat on
# tracepoints, in the background), to turn samples into per-round-trip figures.
readonly SYSCALLS=sendto,recvfrom,write,writev,read,epoll_wait,futex,fdatasync,pwrite64
count_syscalls() {
    local backends events
    backends=$(awk -v b="rondo-pg-$bench_pid-" '
        index($0, b) && /bin\/postgres / { pm[$1] = 1 }
        { parent[$1] = $2; title[$1] = $0 }
        END { for (p in parent) if ((parent[p] in pm) && title[p] ~ /postgres: [^ ]+ [^ ]+ [0-9a-f.:]+\(/) printf "%s%s", (n++ ? "," : ""), p }' "$WORK/ps.txt")
    events=$(tr ',' '\n' <<<"$SYSCALLS" | sed 's/^/syscalls:sys_enter_/' | paste -sd, -)
    perf stat -x, -e "$events" -p "$bench_pid" -o "$WORK/syscalls-bench.csv" >/dev/null 2>&1 &
    stat_pids+=($!)
    if [[ -n $backends ]]; then
        perf stat -x, -e "$events" -p "$backends" -o "$WORK/syscalls-backends.csv" >/dev/null 2>&1 &
        stat_pids+=($!)
    fi
}

# --- build and record ------------------------------------------------------------------------
record() {
    if [[ ${PROFILE_SKIP_BUILD:-0} != 1 ]]; then
        say "building rondo-bench (release, line tables, frame pointers) into $CARGO_TARGET_DIR"
        CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
            RUSTFLAGS="${RUSTFLAGS:-} -C force-frame-pointers=yes" \
            cargo build --release -p rondo-bench
    fi
    [[ -x $BIN ]] || die "$BIN missing (build failed, or PROFILE_SKIP_BUILD=1 without a build)"

    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
        say "warning: load average $load before the run: other processes will share the CPUs and show in the profile"
    fi
    rm -rf "$WORK"
    mkdir -p "$WORK"
    trap cleanup EXIT
    say "running rondo-bench ${flags[*]}"
    "$BIN" "${flags[@]}" >"$WORK/bench.out" 2>"$WORK/bench.err" &
    bench_pid=$!
    echo "$bench_pid" >"$WORK/bench.pid"
    await_line "(b) chains"
    perf record -e cpu-clock -F "$FREQ" -a "${callgraph[@]}" -o "$WORK/perf.data" \
        2>"$WORK/perf-record.err" &
    perf_pid=$!
    say "chain phase started: perf recording ($CALLGRAPH call graphs, $FREQ Hz)"
    local started=$SECONDS mid_done=false
    snapshot_processes
    pg_counters >"$WORK/pg-counters.start"
    count_syscalls
    until grep -qF -- "(d) pgbench" "$WORK/bench.err"; do
        kill -0 "$bench_pid" 2>/dev/null || break
        if ! $mid_done && ((SECONDS - started >= 3)); then
            snapshot_processes
            mid_done=true
        fi
        sleep 0.2
    done
    # At once, before pgbench writes to the same cluster. Backends publish their counters about
    # once a second, so both ends lag by up to that much: good to a few percent.
    pg_counters >"$WORK/pg-counters.end"
    snapshot_processes
    local pid
    for pid in "${stat_pids[@]}" "$perf_pid"; do kill -INT "$pid" 2>/dev/null || true; done
    for pid in "${stat_pids[@]}" "$perf_pid"; do wait "$pid" || true; done
    stat_pids=()
    perf_pid=""
    local recorded=$((SECONDS - started))
    printf 'flags=%s\ncallgraph=%s\nfreq=%s\nrecorded_s=%s\n' "${flags[*]}" "$CALLGRAPH" \
        "$FREQ" "$recorded" >"$WORK/meta"
    say "chain phase over after about ${recorded}s; waiting for the bench to finish"
    wait "$bench_pid" || {
        cat "$WORK/bench.err" >&2
        die "rondo-bench failed"
    }
    bench_pid=""
    [[ -s $WORK/perf.data ]] || die "perf recorded nothing: see $WORK/perf-record.err"
}

# --- analyse ---------------------------------------------------------------------------------

# pid -> group ("rondo-bench", "postgres: client backend", "postgres: walwriter", ...) for the
# processes of this run, from the ps snapshots. Postgres processes of another cluster (the
# system's, another test's) are "postgres (other cluster)".
write_roles() {
    awk -v bench="$1" '
        { pid = $1; ppid = $2; $1 = ""; $2 = ""; sub(/^  /, ""); args[pid] = $0; parent[pid] = ppid }
        $0 ~ ("rondo-pg-" bench "-") && $0 ~ /bin\/postgres / { ours[pid] = 1 }
        END {
            any = length(ours) > 0
            for (pid in args) {
                a = args[pid]
                if (pid == bench) { print pid "\trondo-bench"; continue }
                if (pid in ours) { print pid "\tpostgres: postmaster"; continue }
                if (a !~ /^postgres: /) continue
                if (any && !(parent[pid] in ours)) { print pid "\tpostgres (other cluster)"; continue }
                t = a; sub(/^postgres: /, "", t); sub(/^[0-9]+\/[a-z]+: /, "", t)
                if (t ~ /^[^ ]+ [^ ]+ [0-9a-f.:]+\([0-9]+\)/) role = "client backend"
                else if (t ~ /^autovacuum worker/) role = "autovacuum worker"
                else { role = t; sub(/ +$/, "", role) }
                print pid "\tpostgres: " role
            }
        }' "$WORK/ps.txt" | sort -u -k1,1n >"$WORK/roles.tsv"
}

# The shared awk code: reading a collapsed line, and naming the crate or library of a frame.
readonly AWK_LIB='
function parse(line,    m) {
    # "comm-pid;frame;...;frame count": sets N (samples), F[1..NF_] (frames), PID, COMM
    m = match(line, / [0-9]+$/)
    N = substr(line, m + 1) + 0
    NF_ = split(substr(line, 1, m - 1), F, ";")
    PID = F[1]; sub(/.*-/, "", PID)
    COMM = F[1]; sub(/-[0-9?]+$/, "", COMM)
}
function is_kernel(f) { return f ~ /_\[k\]$/ }
# The syscall (or trap) a kernel sample is in, from its kernel frames.
function kernel_bucket(    i, f) {
    for (i = 2; i <= NF_; i++) {
        f = F[i]
        if (f ~ /__x64_sys_(sendto|sendmsg|write|writev)_\[k\]/) return "kernel: socket send (incl. loopback TCP delivery)"
        if (f ~ /__x64_sys_(recvfrom|recvmsg|read|readv)_\[k\]/) return "kernel: socket recv / read"
        if (f ~ /__x64_sys_(epoll_wait|epoll_pwait|epoll_ctl|poll|ppoll|select)_\[k\]/) return "kernel: epoll/poll"
        if (f ~ /__x64_sys_futex_\[k\]/) return "kernel: futex (thread park/wake)"
        if (f ~ /__x64_sys_(fdatasync|fsync|sync_file_range)_\[k\]/) return "kernel: fdatasync/fsync"
        if (f ~ /__x64_sys_(pwrite64|pwritev|pwritev2)_\[k\]/) return "kernel: pwrite (WAL/data files)"
        if (f ~ /__x64_sys_(pread64|preadv|lseek)_\[k\]/) return "kernel: pread/lseek"
        if (f ~ /__x64_sys_(kill|tgkill|rt_sigreturn|rt_sigprocmask)_\[k\]/) return "kernel: signals (latch wakeups)"
        if (f ~ /__x64_sys_/) { sub(/^.*__x64_sys_/, "", f); sub(/_\[k\]$/, "", f); return "kernel: other syscalls (" f ")" }
        if (f ~ /(exc_page_fault|asm_exc_page_fault)_\[k\]/) return "kernel: page faults"
    }
    return "kernel: interrupts, softirq, scheduler (no syscall)"
}
# The crate of a Rust symbol, or a library name for C symbols.
function crate(f,    c) {
    if (is_kernel(f)) return "[kernel]"
    if (f ~ /^\[/) return "[unknown]"
    if (f ~ /^(malloc|free|cfree|realloc|calloc|_int_malloc|_int_free|_int_realloc|malloc_consolidate|unlink_chunk|tcache_|__libc_malloc|__libc_free|__libc_calloc|__libc_realloc|alloc_perturb|sysmalloc|__GI___libc_free|__GI___libc_malloc|_int_free_merge_chunk|_int_free_create_chunk|_int_free_maybe_consolidate)/) return "[malloc]"
    if (f ~ /^__(mem|str|stp|wmem)[a-z]*_/ || f ~ /^(memcpy|memmove|memset|memcmp|strlen|strcmp)$/) return "[libc mem/str]"
    c = f
    sub(/^(<|&|\*const |\*mut |dyn |\(|\[)+/, "", c)
    if (c ~ /^[A-Za-z0-9_]+::/) { sub(/::.*/, "", c); return c }
    return "[C/other]"
}
'

# Everything the summary says about the rondo-bench process.
rust_summary() {
    awk -v bench="$1" -v top="$TOP_RUST" "$AWK_LIB"'
    function group(c) {
        if (c ~ /^(h2)$/) return "gRPC: h2 (HTTP/2 framing, HPACK, flow control)"
        if (c ~ /^(hyper|hyper_util|http|http_body|http_body_util|httparse)$/) return "gRPC: hyper/http"
        if (c ~ /^(tonic|tonic_prost|tonic_health|tower|tower_service|tower_layer|tower_http)$/) return "gRPC: tonic/tower"
        if (c ~ /^(prost|prost_types|bytes)$/) return "gRPC: prost/bytes (protobuf, buffers)"
        if (c ~ /^(tokio|tokio_util|tokio_stream|mio|futures_util|futures_core|futures_channel|futures|parking_lot|parking_lot_core|crossbeam_utils|slab)$/) return "tokio runtime, channels, futures"
        if (c ~ /^(tokio_postgres|postgres_protocol|postgres_types|deadpool|deadpool_postgres|fallible_iterator)$/) return "tokio-postgres, deadpool"
        if (c ~ /^(serde_json|serde)$/) return "serde_json"
        if (c ~ /^rondo_/) return "rondo code (" c ")"
        if (c ~ /^(tracing|tracing_core|tracing_subscriber)$/) return "tracing"
        if (c ~ /^(core|alloc|std|hashbrown)$/) return "Rust core/alloc/std"
        if (c == "[malloc]" || c == "__rustc") return "allocator (glibc malloc/free, Rust alloc shims)"
        if (c == "[libc mem/str]") return "libc memcpy/memset/memcmp"
        if (c == "[C/other]") return "libc other (syscall wrappers, pthread)"
        if (c == "[unknown]") return "unknown (no symbol)"
        return "other crates (" c ")"
    }
    # Which part of the program a sample belongs to, from the task its stack runs (the frame of
    # the task future, near the root) or, when the stack was cut before it, from its callers.
    function part(s) {
        if (s ~ /hyper::proto::h2::server::H2Stream|rondo_server::api::/) return "server: gRPC request handlers (rondo_server api/service/store + tokio-postgres client side)"
        if (s ~ /tonic::transport::server::serve_connection/) return "server: HTTP/2 connection tasks (tonic/hyper/h2 server)"
        if (s ~ /deadpool_postgres::ConfigConnectImpl|tokio_postgres::connection::Connection/) return "server: PostgreSQL connection tasks (tokio-postgres socket IO, message framing)"
        if (s ~ /rondo_server::/) return "server: background (listen/notify, sweeper, dispatch)"
        if (s ~ /rondo_worker::|tokio_util::task::task_tracker::TrackedFuture/) return "clients: worker SDK (poll, handler, CompleteJob)"
        if (s ~ /rondo_bench::/) return "clients: bench starters (StartWorkflow, AwaitWorkflow)"
        if (s ~ /hyper::proto::h2::client|h2::client|MakeSendRequestService|tower::buffer::worker/) return "clients: HTTP/2 connection tasks (hyper/h2 client)"
        if (s ~ /;(tokio_postgres|postgres_protocol)::/) return "server: PostgreSQL connection tasks (tokio-postgres socket IO, message framing)"
        if (s ~ /;(h2::server|hyper::server|hyper::proto::h2::server|tonic::transport::server)/) return "server: HTTP/2 connection tasks (tonic/hyper/h2 server)"
        if (s ~ /(^|;)start_thread;/) return "tokio runtime outside tasks (scheduler, park, epoll)"
        return "unattributed: stack cut (fp: at a glibc leaf such as send/recv/malloc; dwarf: stack copy too short)"
    }
    {
        parse($0)
        if (PID != bench) next
        total += N
        leaf = F[NF_]
        if (is_kernel(leaf)) { b = kernel_bucket(); kern += N } else b = group(crate(leaf))
        self[b] += N
        sym = leaf; if (length(sym) > 150) sym = substr(sym, 1, 147) "..."
        syms[sym] += N
        stack = ""; for (i = 2; i <= NF_; i++) stack = stack ";" F[i]
        p = part(stack ";")
        parts[p] += N
        cross[p SUBSEP b] += N
        delete seen
        for (i = 2; i <= NF_; i++) {
            c = crate(F[i])
            if (c ~ /^\[/ && c != "[malloc]") continue
            g = group(c)
            if (!(g in seen)) { seen[g] = 1; incl[g] += N }
        }
    }
    function table(title, arr, limit,    k, n, i, j, t, keys) {
        n = 0
        for (k in arr) keys[++n] = k
        for (i = 2; i <= n; i++) { t = keys[i]; for (j = i - 1; j >= 1 && arr[keys[j]] < arr[t]; j--) keys[j + 1] = keys[j]; keys[j + 1] = t }
        printf "\n%s\n", title
        for (i = 1; i <= n && (limit == 0 || i <= limit); i++)
            printf "  %6.2f%%  %7d  %s\n", 100 * arr[keys[i]] / total, arr[keys[i]], keys[i]
    }
    END {
        if (total == 0) { print "\nno samples of the rondo-bench process (pid " bench ")"; exit }
        printf "\n== rondo-bench process (pid %s): %d samples, %.1f%% of them in the kernel ==\n", bench, total, 100 * kern / total
        printf "(percentages below are of this process'"'"'s samples)\n"
        table("By part of the program (the task each sample runs in):", parts, 0)
        printf "\nEach part by self-time bucket (top 6; percent of the whole process):\n"
        np = 0; for (p in parts) pk[++np] = p
        for (i = 2; i <= np; i++) { t = pk[i]; for (j = i - 1; j >= 1 && parts[pk[j]] < parts[t]; j--) pk[j + 1] = pk[j]; pk[j + 1] = t }
        for (i = 1; i <= np; i++) {
            printf "  %6.2f%%  %s\n", 100 * parts[pk[i]] / total, pk[i]
            delete sub_; for (key in cross) { split(key, kk, SUBSEP); if (kk[1] == pk[i]) sub_[kk[2]] = cross[key] }
            nb = 0; delete bk; for (b in sub_) bk[++nb] = b
            for (x = 2; x <= nb; x++) { t = bk[x]; for (y = x - 1; y >= 1 && sub_[bk[y]] < sub_[t]; y--) bk[y + 1] = bk[y]; bk[y + 1] = t }
            for (x = 1; x <= nb && x <= 6; x++) printf "            %6.2f%%  %s\n", 100 * sub_[bk[x]] / total, bk[x]
        }
        table("Self time by bucket (the sampled function'"'"'s crate; kernel by syscall):", self, 0)
        table("Inclusive by bucket (samples with any frame of it on the stack; FP stacks cut at libc leaves):", incl, 0)
        table("Top " top " symbols, self time:", syms, top)
    }' "$WORK/collapsed.txt"
}

# Everything the summary says about this run's PostgreSQL processes.
postgres_summary() {
    awk -v roles="$WORK/roles.tsv" -v top="$TOP_PG" "$AWK_LIB"'
    BEGIN { while ((getline l < roles) > 0) { split(l, rr, "\t"); role[rr[1]] = rr[2] } }
    # Flat buckets by the sampled function (PostgreSQL is stripped: only exported functions
    # have names; static ones show as [postgres]).
    function pg_bucket(f) {
        if (f ~ /^\[postgres\]$|^\[unknown\]$/) return "postgres: static function (no symbol)"
        if (f ~ /^(raw_parser|base_yyparse|core_yylex|scanner_|pg_parse_query|parse_analyze|transform|exprType|exprTypmod|exprCollation|exprLocation|make_op|make_const|coerce_|can_coerce|func_|ParseFuncOrColumn|addRangeTableEntry|expandRTE|stringToNode|nodeRead|pg_strtok|QueryRewrite|AcquireRewriteLocks|fireRIRrules|rewrite)/) return "parse/analyze/rewrite (incl. node-string reads)"
        if (f ~ /^(planner|standard_planner|subquery_planner|grouping_planner|query_planner|make_one_rel|set_base_rel|set_rel_|create_|cost_|add_path|get_relation_info|build_simple_rel|build_base_rel|preprocess_|eval_const_expressions|expression_planner|set_plan_refs|fix_scan_expr|clauselist_selectivity|clause_selectivity|restriction_selectivity|match_clause|generate_|extract_actual|find_|make_pathkeys|pathkeys_|estimate_|get_tablespace|compare_path|add_partial_path|plan_|GetCachedPlan|BuildCachedPlan|CheckCachedPlan|choose_custom_plan|RevalidateCachedQuery|AcquireExecutorLocks|AcquirePlannerLocks|CopyCachedPlan|copyObjectImpl|equal|_equal|expression_tree_walker|expression_tree_mutator|query_tree_walker|contain_|check_functions_in_node)/) return "plan / plan cache (incl. tree walks and copies)"
        if (f ~ /^(Exec|ExecInterpExpr|ExecScan|ExecIndex|ExecInsert|ExecUpdate|ExecModifyTable|ExecInit|ExecEnd|ExecBuild|ExecReady|ExecAssign|ExecOpen|ExecClose|ExecFetch|ExecStore|ExecClear|ExecCopySlot|ExecGet|ExecProcNode|ExecCheck|ExecConstraints|ExecResult|ExprEval|CheckExprStillValid|standard_Executor|Executor|CreateExecutorState|FreeExecutorState|MakeTupleTableSlot|tts_|slot_|ExecLock|ExecPush|ExecComputeStoredGenerated|ExecWithCheck|EvalPlanQual|InitPlan|ExecutorStart|ExecutorEnd|ExecutorRun|ExecutorFinish|CreateQueryDesc|FreeQueryDesc|PortalRun|PortalStart|PortalDrop|CreatePortal|ProcessQuery|fill_val|heap_fill_tuple|heap_form_tuple|heap_compute_data_size|heap_deform|heap_copy|heap_getsysattr|nocachegetattr|toast_|int4|int8|textout|texteq|byteaout|numeric|timestamp|jsonb|JsonbValue|pg_detoast|DatumGet|datum|uuid_|gen_random_uuid|nextval|now|GetCurrentTimestamp|texteq|bttextcmp|varstr_cmp|hash_uint32|hashint|btint8cmp|btint4cmp|namein|textin|int8in|int4in)/) return "executor, expressions, tuple forming, datatypes"
        if (f ~ /^(_bt_|bt|index_|IndexScan|RelationGetIndex|BuildIndexInfo|FormIndexDatum|index_getnext|index_fetch|index_beginscan|index_rescan|index_endscan|index_insert)/) return "btree / index access"
        if (f ~ /^(heap_|heapam_|heapgettup|HeapTupleSatisfies|HeapTupleHeader|RelationGetBufferForTuple|RelationPutHeapTuple|PageAdd|PageRepair|PageGet|PageInit|PageIsVerified|visibilitymap_|log_heap|compute_new_xmax|simple_heap|table_|systable_|heap_page_prune|heap_prune|TransactionIdIsInProgress|TransactionIdDidCommit|TransactionLogFetch|XidInMVCCSnapshot|HeapTupleIsSurelyDead|MarkBufferDirtyHint)/) return "heap access (insert/update/visibility/prune)"
        if (f ~ /^(ReadBuffer|ReleaseBuffer|PinBuffer|UnpinBuffer|LockBuffer|ConditionalLockBuffer|MarkBufferDirty|BufTable|BufferGet|BufferAlloc|StrategyGetBuffer|IncrBufferRefCount|ResourceOwner|ReadBufferExtended|ReadBuffer_common|BufferIsPermanent|BufferGetLSN|FlushBuffer|GetPrivateRefCount|LockBufHdr|UnlockReleaseBuffer|smgr|md|mdnblocks|_mdfd|FileSize|FileWrite|FileRead)/) return "shared buffers, smgr"
        if (f ~ /^(XLog|CopyXLog|ReserveXLog|GetXLog|WALInsert|pg_comp_crc32c|issue_xlog_fsync|XLogWrite|XLogBackgroundFlush|XLogFlush|XLogInsertRecord|XLogRegister|XLogBeginInsert|XLogRecordAssemble|WaitXLogInsertionsToFinish|AdvanceXLInsertBuffer|log_|WalSnd|WalWriter|pg_fdatasync|pg_pwrite|XLogSetAsync|XLogNeedsFlush)/) return "WAL insert / flush (XLog*)"
        if (f ~ /^(LWLock|LockAcquire|LockRelease|LockRelationOid|UnlockRelationId|LockRelId|LockHeldByMe|ConditionalLock|SetupLockInTable|GrantLock|FastPath|LockTuple|heap_lock_tuple|XactLockTableWait|XactLockTableInsert|LockReleaseAll|s_lock|perform_spin_delay|ProcSleep|ProcWakeup|SpinLock|LockCheckConflicts|LockTagHashCode|proclock_hash|GetLockConflicts|VirtualXactLock)/) return "locks (heavyweight, LWLock, spinlocks)"
        if (f ~ /^(StartTransaction|CommitTransaction|AbortTransaction|RecordTransactionCommit|TransactionIdCommitTree|TransactionIdSetTreeStatus|TransactionIdAsyncCommitTree|SetCurrentStatementStartTimestamp|GetNewTransactionId|AssignTransactionId|ProcArrayEndTransaction|ProcArrayGroupClearXid|AtEOXact|AtEOXact_|AtCommit_|AtStart_|PreCommit_|CallXactCallbacks|ExtendCLOG|SimpleLru|TransactionIdSetPageStatus|CommandCounterIncrement|xact|PreventInTransactionBlock|BeginTransactionBlock|EndTransactionBlock|GetSnapshotData|GetTransactionSnapshot|GetLatestSnapshot|RegisterSnapshot|UnregisterSnapshot|PushActiveSnapshot|PopActiveSnapshot|SnapshotResetXmin|InvalidateCatalogSnapshot|AtEOXact_Snapshot|PushCopiedSnapshot|GetOldestNonRemovableTransactionId|GlobalVis|TransactionIdIsCurrentTransactionId|ProcessCompletedNotifies|AtCommit_Notify|PreCommit_Notify|Async_Notify|SignalBackends)/) return "transaction begin/commit, snapshots, CLOG"
        if (f ~ /^(AllocSet|palloc|pfree|repalloc|MemoryContext|pstrdup|psprintf|pnstrdup|GenerationAlloc|GenerationFree|SlabAlloc|SlabFree|mcxt|GetMemoryChunkContext|AllocSetContextCreateInternal)/) return "memory contexts (palloc/pfree)"
        if (f ~ /^(hash_search|hash_search_with_hash_value|hash_bytes|hash_seq|hash_any|hash_create|hash_destroy|string_hash|tag_hash|uint32_hash|oid_hash|SearchCatCache|SearchSysCache|ReleaseCatCache|ReleaseSysCache|SysCacheGetAttr|CatalogCache|GetSysCacheOid|RelationIdGetRelation|RelationClose|RelationIncrementReferenceCount|RelationDecrementReferenceCount|relation_open|relation_close|table_open|table_close|index_open|index_close|try_relation_open|RelationBuild|RelationCacheInvalidate|RelationGetIndexList|RelationGetIndexRawAttOptions|RelationGetIndexAttOptions|RelationGetIndexExpressions|RelationGetIndexPredicate|RelationGetStatExtList|RelationGetFKeyList|CreateTupleDescCopy|CreateTemplateTupleDesc|TupleDescInitEntry|FreeTupleDesc|equalTupleDescs|get_|lookup_type_cache|getTypeIOParam|getBaseType|fmgr_info|fmgr_info_cxt|FunctionCall|OidFunctionCall|DirectFunctionCall|AcceptInvalidationMessages|ReceiveSharedInvalidMessages|LocalExecuteInvalidationMessage|CallSyscacheCallbacks|InvalidateCatalogSnapshot)/) return "catalog/relcache/syscache, hash tables, fmgr"
        if (f ~ /^(pq_|socket_|secure_read|secure_write|be_tls|internal_flush|internal_putbytes|WaitEventSet|WaitLatch|SetLatch|ResetLatch|latch_sigurg|ModifyWaitEvent|ReadCommand|SocketBackend|PostgresMain|ProcessClientReadInterrupt|ProcessClientWriteInterrupt|CHECK_FOR_INTERRUPTS|ProcessInterrupts|BeginCommand|EndCommand|ReadyForQuery|SendRowDescriptionMessage|printtup|printtup_|debug_query|check_log_|errstart|errfinish|set_ps_display|pgstat_report_activity|pgstat_|pg_stat|enlargeStringInfo|appendStringInfo|appendBinaryStringInfo|initStringInfo|resetStringInfo|pg_client_to_server|pg_server_to_client|pg_verify_mbstr|pg_mbstrlen|pg_any_to_server|pg_encoding|InitBufferIO|epoll_wait|__libc_recv|__libc_send|__send|__recv|send|recv|__GI___poll|__poll|kill|__GI_kill)/) return "protocol, latches, socket wrappers, stats"
        if (f ~ /^(__mem|__str|memcpy|memmove|memset|memcmp|strlen|strcmp|strncpy|__GI_____strtoll|__GI_____strtol|strtol|__strtol|_itoa|__printf|vfprintf|__vsnprintf|pg_lltoa|pg_ltoa|pg_ulltoa|pg_snprintf|pg_vsnprintf|dopr|fmtint|pg_strncasecmp|pg_qsort|qsort|pg_qsort_r|__qsort|msort|pg_toupper|pg_tolower)/) return "libc/port: memcpy, strings, formatting"
        if (f ~ /^(_int_malloc|_int_free|malloc|free|cfree|realloc|calloc|malloc_consolidate|unlink_chunk|tcache|__libc_malloc|__libc_free|_int_realloc|sysmalloc)/) return "glibc malloc (under palloc)"
        if (f ~ /libcrypto/) return "libcrypto (gen_random_uuid / pg_strong_random)"
        return "other named functions"
    }
    # Phase of the extended-query protocol a backend sample is in, from the exported functions
    # on its stack (Debian builds PostgreSQL with frame pointers, so whole stacks are the rule;
    # static functions show as [postgres]). First match wins.
    function phase(s) {
        if (s ~ /;(planner|standard_planner|pg_plan_query|pg_plan_queries|subquery_planner|query_planner);/) return "plan (planner: custom plans, new statements)"
        if (s ~ /;(pg_analyze_and_rewrite[a-z_]*|parse_analyze[a-z_]*|QueryRewrite|RevalidateCachedQuery|CompleteCachedPlan|CreateCachedPlan);/) return "analyze/rewrite (incl. plan-cache revalidation)"
        if (s ~ /;(pg_parse_query|raw_parser|base_yyparse);/) return "parse (raw parser: simple-query BEGIN/COMMIT, new statements)"
        if (s ~ /;(XLogFlush|issue_xlog_fsync|XLogWrite|fdatasync);/) return "commit: WAL write + fdatasync (XLogFlush)"
        if (s ~ /;(CommitTransactionCommand|CommitTransaction|RecordTransactionCommit|AtCommit_Notify|PreCommit_Notify|ProcArrayEndTransaction);/) return "commit: other (clog, lock release, resource cleanup)"
        if (s ~ /;(StartTransactionCommand|StartTransaction|BeginTransactionBlock);/) return "begin / start transaction"
        if (s ~ /;(__send|__libc_send|secure_write|secure_raw_write|pq_flush|socket_flush|internal_flush);/) return "send to client socket (flush at Sync: syscall + loopback TCP)"
        if (s ~ /;(secure_read|secure_raw_read|pq_getbyte|pq_getmessage|pq_recvbuf|pq_peekbyte|WaitEventSetWait|WaitLatchOrSocket|ReadCommand|SocketBackend|epoll_wait|__libc_recv);/) return "wait for / read from client socket (epoll + recv)"
        if (s ~ /;(AfterTriggerEndQuery|AfterTriggerFireDeferred|RI_FKey_check|RI_FKey_check_ins|RI_FKey_fk_upd_check_required|SPI_execute_snapshot);/) return "execute: foreign-key checks (RI triggers, SPI)"
        if (s ~ /;(ExecInsertIndexTuples|btinsert|_bt_doinsert|index_insert);/) return "execute: index insert"
        if (s ~ /;(heap_insert|heap_update|heapam_tuple_insert|heapam_tuple_update|simple_heap_update|heap_lock_tuple|heapam_tuple_lock);/) return "execute: heap insert/update/row lock"
        if (s ~ /;(XLogInsert|XLogInsertRecord);/) return "execute: WAL insert (records of the writes)"
        if (s ~ /;(ExecutorStart|standard_ExecutorStart|ExecInitNode|InitPlan|CreateExecutorState|PortalStart);/) return "execute: executor startup (open relations, build expression states)"
        if (s ~ /;(ExecutorEnd|standard_ExecutorEnd|ExecEndNode|FreeExecutorState|PortalDrop|ExecutorFinish|standard_ExecutorFinish|ExecCloseIndices|ExecCloseResultRelations);/) return "execute: executor shutdown, portal drop"
        if (s ~ /;(ExecutorRun|standard_ExecutorRun|PortalRun|PortalRunMulti|ProcessQuery|ExecProcNode|ExecScan|index_getnext_slot|index_fetch_heap);/) return "execute: scans, quals, projection, rows out"
        if (s ~ /;(GetCachedPlan|CheckCachedPlan|AcquireExecutorLocks|CreatePortal|GetPortalByName|FetchPreparedStatement|OidReceiveFunctionCall|ReceiveFunctionCall|getTypeBinaryInputInfo|PortalDefineQuery);/) return "bind: plan-cache lookup, locks, parameter decoding, portal"
        if (s ~ /;(PostgresMain);/) return "other work in PostgresMain (snapshots, stats, message loop)"
        return "stack cut (no PostgresMain frame)"
    }
    # Functions whose inclusive share (on the stack at all) the summary lists.
    function watched(f) {
        return f ~ /^(PortalRun|PortalStart|PortalDrop|standard_ExecutorStart|standard_ExecutorRun|standard_ExecutorFinish|standard_ExecutorEnd|ExecInitNode|ExecInitModifyTable|ExecInitIndexScan|ExecInitNestLoop|ExecInitLockRows|ExecInsertIndexTuples|btinsert|heap_insert|heap_update|heap_lock_tuple|ExecConstraints|AfterTriggerEndQuery|SPI_execute_snapshot|RI_FKey_check_ins|GetCachedPlan|pg_plan_query|pg_parse_query|CommitTransactionCommand|StartTransactionCommand|XLogInsertRecord|XLogFlush|fdatasync|LockAcquireExtended|LockReleaseAll|LWLockAcquire|hash_search_with_hash_value|relation_open|ReadBufferExtended|GetSnapshotData|MemoryContextDelete|AllocSetContextCreateInternal|OidReceiveFunctionCall|printtup|pq_getbyte|epoll_wait|__send|nextval_internal|gen_random_uuid|pgstat_report_activity)$/
    }
    function table(title, arr, base, limit,    k, n, i, j, t, keys) {
        n = 0
        for (k in arr) keys[++n] = k
        for (i = 2; i <= n; i++) { t = keys[i]; for (j = i - 1; j >= 1 && arr[keys[j]] < arr[t]; j--) keys[j + 1] = keys[j]; keys[j + 1] = t }
        printf "\n%s\n", title
        for (i = 1; i <= n && (limit == 0 || i <= limit); i++)
            printf "  %6.2f%%  %7d  %s\n", 100 * arr[keys[i]] / base, arr[keys[i]], keys[i]
    }
    {
        parse($0)
        r = (PID in role) ? role[PID] : (COMM == "postgres" ? "postgres: unmapped pid" : "")
        if (r !~ /^postgres: /) next
        all += N
        leaf = F[NF_]
        sym = leaf; if (length(sym) > 120) sym = substr(sym, 1, 117) "..."
        if (r == "postgres: client backend" || r == "postgres: unmapped pid") {
            be += N
            if (is_kernel(leaf)) { b = kernel_bucket(); bek += N } else b = pg_bucket(leaf)
            self[b] += N
            syms[sym] += N
            stack = ";"; for (i = 2; i <= NF_; i++) stack = stack F[i] ";"
            ph[phase(stack)] += N
            if (stack ~ /;PostgresMain;/) whole += N
            delete seen
            for (i = 2; i <= NF_; i++) if (watched(F[i]) && !(F[i] in seen)) { seen[F[i]] = 1; incl[F[i]] += N }
        } else {
            other[r] += N
            osyms[r " | " sym] += N
        }
    }
    END {
        if (all == 0) { print "\nno samples of PostgreSQL processes of this run"; exit }
        printf "\n== PostgreSQL processes of this run: %d samples ==\n", all
        printf "client backends: %d samples (%.1f%% of them in the kernel); other roles: %d\n", be, 100 * bek / (be ? be : 1), all - be
        printf "(percentages below are of client-backend samples unless said otherwise)\n"
        table("Client backends, self time by bucket (sampled function; kernel by syscall):", self, be, 0)
        table("Client backends, top " top " symbols, self time ([postgres] = static function, stripped binary):", syms, be, top)
        printf "\nClient backends by phase (first match from exported functions on the stack; %.1f%% of samples have a whole stack up to PostgresMain):", 100 * whole / (be ? be : 1)
        table("", ph, be, 0)
        table("Client backends, inclusive share of selected functions (on the stack at all; phases overlap):", incl, be, 0)
        table("Other PostgreSQL roles, top symbols (percent of all PostgreSQL samples):", osyms, all, 15)
    }' "$WORK/collapsed.txt"
}

# Share of all samples by process group.
process_summary() {
    awk -v roles="$WORK/roles.tsv" -v steps="$1" -v freq="$2" "$AWK_LIB"'
    BEGIN { while ((getline l < roles) > 0) { split(l, r, "\t"); role[r[1]] = r[2] } }
    {
        parse($0)
        if (PID in role) g = role[PID]
        else if (PID == "0" || COMM == "swapper") g = "idle (swapper)"
        else if (COMM == "postgres") g = "postgres: unmapped pid"
        else if (COMM == "perf" || COMM ~ /^perf-/) g = "perf (the profiler)"
        else g = "other: " COMM
        if (g == "postgres: client backend" || g == "postgres: unmapped pid") pids[PID] = 1
        n[g] += N; total += N
        if (is_kernel(F[NF_])) k[g] += N
        if (g != "idle (swapper)") busy += N
        if (g ~ /^(rondo-bench|postgres: )/ && g != "postgres (other cluster)") work += N
    }
    END {
        printf "== Share of samples by process (all CPUs) ==\n"
        printf "%d samples; busy (not idle) %.1f%%; this workload (rondo-bench + its PostgreSQL) %.1f%% of all, %.1f%% of busy\n", total, 100 * busy / total, 100 * work / total, 100 * work / (busy ? busy : 1)
        printf "client backends seen: %d; CPU of this workload per chain step: %.3f ms\n", length(pids), 1000 * work / freq / steps
        printf "(ms/step = CPU milliseconds per chain step: samples / %d Hz / %d steps)\n\n", freq, steps
        printf "  %7s  %7s  %7s  %8s  %7s  %s\n", "% all", "% busy", "% work", "kernel%", "ms/step", "process group (kernel% = share of the group in the kernel)"
        m = 0; for (g in n) keys[++m] = g
        for (i = 2; i <= m; i++) { t = keys[i]; for (j = i - 1; j >= 1 && n[keys[j]] < n[t]; j--) keys[j + 1] = keys[j]; keys[j + 1] = t }
        for (i = 1; i <= m; i++) {
            g = keys[i]
            if (i > 20 && n[g] / total < 0.002) { rest += n[g]; continue }
            w = (g ~ /^(rondo-bench|postgres: )/ && g != "postgres (other cluster)") ? sprintf("%6.2f%%", 100 * n[g] / work) : "      -"
            printf "  %6.2f%%  %6.2f%%  %7s  %7.1f%%  %7.3f  %s\n", 100 * n[g] / total, (g == "idle (swapper)") ? 0 : 100 * n[g] / busy, w, 100 * k[g] / n[g], 1000 * n[g] / freq / steps, g
        }
        if (rest) printf "  %6.2f%%  (smaller groups)\n", 100 * rest / total
    }' "$WORK/collapsed.txt"
}

# Syscalls per step of the bench process and of the client backends.
syscalls_summary() {
    local who file
    printf '\nSyscalls during the chain phase per step (perf stat on syscall tracepoints):\n'
    printf '  %-12s' "" && tr ',' '\n' <<<"$SYSCALLS" | xargs printf '%11s' && echo
    for who in bench backends; do
        file=$WORK/syscalls-$who.csv
        [[ -s $file ]] || continue
        awk -F, -v steps="$1" -v who="$who" -v list="$SYSCALLS" '
            $3 ~ /syscalls:sys_enter_/ { e = $3; sub(/.*sys_enter_/, "", e); c[e] = $1 }
            END { n = split(list, l, ","); printf "  %-12s", (who == "bench" ? "rondo-bench" : "backends"); for (i = 1; i <= n; i++) printf "%11.2f", c[l[i]] / steps; printf "\n" }' "$file"
    done
}

# What PostgreSQL counted during the chain phase, per step.
counters_summary() {
    if [[ ! -s $WORK/pg-counters.start || ! -s $WORK/pg-counters.end ]]; then
        printf '\n(no PostgreSQL counters: psql missing or cluster not found)\n'
        return
    fi
    awk -v steps="$1" 'NR == 1 { for (i = 1; i <= NF; i++) a[i] = $i } NR == 2 { for (i = 1; i <= NF; i++) b[i] = $i }
        END {
            split("transactions committed|transactions rolled back|rows inserted|rows updated|rows fetched|WAL records|WAL bytes|WAL writes (XLogWrite)|WAL syncs (fdatasync of WAL)", name, "|")
            printf "\nPostgreSQL counters over the chain phase (pg_stat_database, pg_stat_wal; both ends lag up to ~1 s), for %d steps:\n", steps
            for (i = 1; i <= 9; i++) printf "  %-36s %12d  %9.2f per step\n", name[i], b[i] - a[i], (b[i] - a[i]) / steps
            if (b[1] - a[1] > 0) printf "  %-36s %12s  %9.2f\n", "WAL syncs per committed transaction", "", (b[9] - a[9]) / (b[1] - a[1])
        }' "$WORK/pg-counters.start" "$WORK/pg-counters.end"
}

analyse() {
    [[ -s $WORK/perf.data && -s $WORK/bench.pid ]] || die "no recording in $WORK: run without PROFILE_ANALYSE_ONLY first"
    local bench meta_callgraph steps freq
    bench=$(cat "$WORK/bench.pid")
    meta_callgraph=$(sed -n 's/^callgraph=//p' "$WORK/meta")
    freq=$(sed -n 's/^freq=//p' "$WORK/meta")
    [[ $meta_callgraph == "$CALLGRAPH" ]] ||
        die "$WORK was recorded with PROFILE_CALLGRAPH=$meta_callgraph; set it to match"
    mkdir -p "$OUT_DIR"
    steps=$(grep -o '"chain_handler_calls":[0-9]*' "$WORK/bench.out" | cut -d: -f2 || true)
    [[ -n $steps ]] || die "no chain_handler_calls in $WORK/bench.out: did the bench finish?"
    say "perf script + inferno-collapse-perf (dwarf unwinding takes a while)"
    perf script --no-inline -i "$WORK/perf.data" -F comm,pid,tid,cpu,time,event,ip,sym,dso \
        2>"$WORK/perf-script.err" |
        inferno-collapse-perf --pid --kernel >"$WORK/collapsed.txt" 2>"$WORK/collapse.err"
    write_roles "$bench"

    say "flame graphs: $SVG, $PG_SVG"
    awk -v bench="$bench" '{ p = $0; sub(/;.*/, "", p); sub(/.*-/, "", p) } p == bench { sub(/^[^;]*;/, "rondo-bench;"); print }' \
        "$WORK/collapsed.txt" |
        inferno-flamegraph --title "rondo-bench during the chain workload ($TAG, $CALLGRAPH stacks)" \
            --subtitle "server + in-process workers + bench clients; cpu-clock $freq Hz" \
            --minwidth 0.5 --width 1600 >"$SVG"
    awk -v roles="$WORK/roles.tsv" 'BEGIN { while ((getline l < roles) > 0) { split(l, r, "\t"); role[r[1]] = r[2] } }
        { p = $0; sub(/;.*/, "", p); sub(/.*-/, "", p) }
        (p in role) && role[p] ~ /^postgres: / { sub(/^[^;]*;/, role[p] ";"); print }' "$WORK/collapsed.txt" |
        inferno-flamegraph --title "PostgreSQL during the chain workload ($TAG, $CALLGRAPH stacks)" \
            --subtitle "this run's cluster, by role; [postgres] = static function of the stripped binary" \
            --minwidth 0.5 --width 1600 >"$PG_SVG"

    say "summary: $SUMMARY"
    {
        printf '# Profile of the chain workload: %s\n\n' "$TAG"
        printf 'bench: rondo-bench %s\n' "$(sed -n 's/^flags=//p' "$WORK/meta")"
        printf 'perf record -e cpu-clock -F %s -a, %s call graphs, during the chain phase only (about %s s)\n' \
            "$freq" "$meta_callgraph" "$(sed -n 's/^recorded_s=//p' "$WORK/meta")"
        printf 'machine: %s CPUs, %s\n' "$(nproc)" "$(uname -r)"
        sed -n '/^(b) chains/,/^$/p' "$WORK/bench.out" | sed 's/^/  /'
        grep -E 'transactions per second' "$WORK/bench.out" | sed 's/^ */  pgbench (after the profile): /' || true
        grep -E 'chain steps/s' "$WORK/bench.out" | sed 's/^ */  /' || true
        grep -E 'lost samples|LOST' "$WORK/perf-record.err" || true
        counters_summary "$steps"
        syscalls_summary "$steps"
        echo
        process_summary "$steps" "$freq"
        rust_summary "$bench"
        postgres_summary
    } >"$SUMMARY"
    say "done: $SUMMARY ($(wc -l <"$SUMMARY") lines), $SVG ($(du -k "$SVG" | cut -f1) KiB), $PG_SVG ($(du -k "$PG_SVG" | cut -f1) KiB)"
}

if [[ ${PROFILE_ANALYSE_ONLY:-0} != 1 ]]; then record; fi
analyse
