#!/usr/bin/env bash
# A real multi-host launch on one machine: two network namespaces ("hosts",
# each with its own hostname, network stack and address) joined by a veth
# pair, OpenMPI started with --hostfile across them (its ssh replaced by an
# agent that enters the namespace), MPI traffic over TCP only (no shared
# memory). Runs `llava train` across the two hosts and checks it equals the
# same run on one machine: bitwise the 2-process run, and the 1-process run
# with the same global batch to fp32 rounding.
# Needs root (ip netns), iproute2, util-linux (unshare), OpenMPI.
# usage: scripts/multinode_netns.sh LLAVA SOURCE_DIR BUILD_DIR [ZERO_STAGE]
# Exit 0 all good, 1 a check failed, 77 cannot run here (the reason printed).
set -u
llava=$(readlink -f "$1")
src=$(readlink -f "$2")
build=$(readlink -f "$3")
zero=${4:-3}
st_diff=$build/tests/st_diff
cannot() { echo "skip: $*"; exit 77; }
[ "$(id -u)" = 0 ] || cannot "network namespaces need root"
for tool in ip unshare mpirun; do command -v $tool > /dev/null 2>&1 || cannot "$tool not found (scripts/install_deps.sh)"; done
tag=ll$$
h1=${tag}a h2=${tag}b
tmp=$(mktemp -d /tmp/llava_netns.XXXXXX)
cleanup() { ip netns del "$h1" 2> /dev/null; ip netns del "$h2" 2> /dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
ip netns add "$h1" 2> "$tmp/netns.err" || cannot "ip netns add is not permitted here: $(cat "$tmp/netns.err")"
ip netns add "$h2" || cannot "second namespace"
# One cable between the hosts; the addresses exist only inside the namespaces.
ip link add ${tag}x type veth peer name ${tag}y || cannot "veth pairs are not permitted here"
ip link set ${tag}x netns "$h1" && ip link set ${tag}y netns "$h2" &&
  ip -n "$h1" addr add 10.213.0.1/24 dev ${tag}x && ip -n "$h2" addr add 10.213.0.2/24 dev ${tag}y &&
  ip -n "$h1" link set ${tag}x up && ip -n "$h2" link set ${tag}y up &&
  ip -n "$h1" link set lo up && ip -n "$h2" link set lo up || cannot "could not wire the namespaces"

# mpirun's "ssh HOST CMD": enter HOST's namespace with a hostname of its own.
cat > "$tmp/agent.sh" << EOF
#!/bin/sh
while [ \$# -gt 0 ]; do case "\$1" in -*) shift;; *) break;; esac; done
host=\$1; shift
case "\$host" in 10.213.0.1) ns=$h1;; 10.213.0.2) ns=$h2;; *) echo "agent: unknown host \$host" >&2; exit 1;; esac
exec ip netns exec \$ns unshare --uts sh -c "hostname \$ns; \$*"
EOF
chmod +x "$tmp/agent.sh"
printf '10.213.0.1 slots=1\n10.213.0.2 slots=1\n' > "$tmp/hostfile"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
across() { # across SECONDS CMD...: mpirun -np 2 over the two hosts, started from the first
  local limit=$1; shift
  timeout "$limit" ip netns exec "$h1" unshare --uts sh -c "hostname $h1; exec \"\$@\"" sh \
    mpirun --hostfile "$tmp/hostfile" -np 2 --mca plm_rsh_agent "$tmp/agent.sh" --mca btl tcp,self \
    --mca btl_tcp_if_include 10.213.0.0/24 --mca oob_tcp_if_include 10.213.0.0/24 -x OMP_NUM_THREADS "$@"
}
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

where=$(across 60 sh -c 'echo "rank $OMPI_COMM_WORLD_RANK on $(hostname) at $(ip -4 -o addr show | grep -o "10\.213\.0\.[0-9]*")"' 2>&1)
echo "$where"
if echo "$where" | grep -q "rank 0 on $h1 at 10.213.0.1" && echo "$where" | grep -q "rank 1 on $h2 at 10.213.0.2"; then
  echo "ok: one process on each host"
else
  fail "the processes did not land one per host"
fi

model=$src/tests/fixtures/tiny_llava15
common=(--set "model=$model" --set data=synthetic:48 --set max_length=96 --set lr=2e-3 --set warmup_ratio=0.1
        --set log_every=100 --set seed=3 --set threads=1 --set stage=2 --set max_steps=5)
across 300 "$llava" train "${common[@]}" --set micro_batch=2 --set zero_stage=$zero --set output_dir="$tmp/hosts" \
  > "$tmp/hosts.log" 2>&1 || { fail "training across the hosts"; cat "$tmp/hosts.log"; }
tail -3 "$tmp/hosts.log"
mpirun -np 2 --oversubscribe "$llava" train "${common[@]}" --set micro_batch=2 --set zero_stage=0 --set output_dir="$tmp/local" \
  > "$tmp/local.log" 2>&1 || fail "2 processes on one host"
"$llava" train "${common[@]}" --set micro_batch=4 --set output_dir="$tmp/single" > "$tmp/single.log" 2>&1 || fail "1 process"
if "$st_diff" "$tmp/hosts/final/model.safetensors" "$tmp/local/final/model.safetensors"; then
  echo "ok: 2 hosts (zero_stage $zero, TCP) == 2 processes on one host (zero_stage 0), bitwise"
else
  fail "2 hosts != 2 local processes"
fi
if "$st_diff" "$tmp/hosts/final/model.safetensors" "$tmp/single/final/model.safetensors" --tol 1e-5; then
  echo "ok: 2 hosts == 1 process with the same global batch (fp32 rounding)"
else
  fail "2 hosts != 1 process"
fi
echo "$failures failures"
[ $failures -eq 0 ]
