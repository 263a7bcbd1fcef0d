// The host emulation of the CUDA built-ins sol's kernels use: the same kernel source, compiled by
// the host C++ compiler with OpenMP, runs block after block, the threads of a block as OpenMP
// threads (so __syncthreads is a real barrier and __shared__ memory is shared by them). It checks
// what a kernel computes (indexing, stage order, reductions across threads), not how fast: the
// plugin uses it where no GPU is present and the user asked for it (SOL_CUDA_EMULATE=1).
#pragma once
#include <omp.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <functional>

#define __global__
#define __device__
#define __host__
#define __restrict__ __restrict
#define __launch_bounds__(n)
#define __noinline__ __attribute__((noinline))
// One block runs at a time, so a function-local static is exactly one block's shared memory.
#define __shared__ static
#define __syncthreads() _Pragma("omp barrier")
#define __threadfence() __sync_synchronize()
#define SOL_INF INFINITY
#define SOL_NAN NAN
#define SOL_FLT_MAX FLT_MAX
#define SOL_DBL_MAX DBL_MAX

struct sol_dim3 {
  unsigned x = 1, y = 1, z = 1;
};
namespace sol_emu {
inline sol_dim3 grid_dim, block_dim, block_idx;
inline thread_local sol_dim3 thread_idx;
}  // namespace sol_emu
#define gridDim (sol_emu::grid_dim)
#define blockDim (sol_emu::block_dim)
#define blockIdx (sol_emu::block_idx)
#define threadIdx (sol_emu::thread_idx)

using std::erf;
using std::exp;
using std::expm1;
using std::log;
using std::log1p;
using std::tanh;

inline int atomicCAS(int* p, int expected, int desired) { return __sync_val_compare_and_swap(p, expected, desired); }
inline int atomicExch(int* p, int v) { return __sync_lock_test_and_set(p, v); }

namespace sol_emu {
// Runs ``kernel`` on ``grid`` blocks of ``block`` threads; 0, or -2 when OpenMP could not give
// the block all its threads (a barrier would then wait forever: refused instead).
inline int launch(long grid, int block, const std::function<void()>& kernel) {
  grid_dim.x = static_cast<unsigned>(grid);
  block_dim.x = static_cast<unsigned>(block);
  int failed = 0;
  for (long b = 0; b < grid && !failed; ++b) {
    block_idx.x = static_cast<unsigned>(b);
#pragma omp parallel num_threads(block)
    {
      if (omp_get_num_threads() != block) {
#pragma omp atomic write
        failed = 1;
      } else {
        thread_idx.x = static_cast<unsigned>(omp_get_thread_num());
        kernel();
      }
    }
  }
  return failed ? -2 : 0;
}
}  // namespace sol_emu
