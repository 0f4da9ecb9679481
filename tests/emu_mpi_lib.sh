# Sourced by the tests that run several emulated GPU processes under mpirun
# with the emulated NCCL (tests/test_zero_cuda.sh, tests/test_nccl_faults.sh).
# Needs $build; sets $emu and $nccl, exits 0 (skip) when the build has no
# emulator or emulated NCCL or the machine no mpirun, and exports what
# OpenMPI needs to run as root with more processes than cores.
emu=$build/llava_emu
nccl=$build/libnccl_emu.so
if [ ! -x "$emu" ] || [ ! -f "$nccl" ]; then
  echo "skip: this build has no CUDA emulator with the emulated NCCL (needs the CUDA toolkit's headers, nccl.h, MPI)"
  exit 0
fi
if ! command -v mpirun > /dev/null 2>&1; then
  echo "skip: mpirun not found (scripts/install_deps.sh installs openmpi-bin)"
  exit 0
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
# 64 KiB chunks of device virtual memory, so tiny models' layers really are unmapped
export LLAVA_CUDA_VMM_CHUNK_KB=64
