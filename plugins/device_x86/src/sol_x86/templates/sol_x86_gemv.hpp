// sol x86 runtime: a dense layer on one row (batch 1), y = W x + b, included by
// sol_x86_onednn.cpp (GemvDense).
//
// Why not oneDNN: its matmul for one row (brg:avx512_core in oneDNN 3.2) streams the weights at
// 12 GB/s on one thread and 20 GB/s on two on this machine, where these loops reach 23 and 30
// (a 9216 x 4096 layer, weights not in cache, by hand with a C++ program). At batch 1 a dense
// layer does one multiply-add per weight it reads, so its time is that stream: AlexNet's and
// VGG's classifiers, and the last layer of every image network.
//
// W is row-major (out, in), as frameworks store it. Four rows at a time share each load of x;
// each row keeps 16 partial sums (one AVX-512 register), added up at the end. The order of the
// additions differs from a sequential sum (as oneDNN's does): rounding differs in the last bits.
#pragma once
#include <cstddef>

#pragma GCC push_options
#pragma GCC optimize("O3")

namespace sol {
namespace gemv {

constexpr int kLanes = 16;

// y[r] for rows r of [first, last): W x + b (b may be null), then relu if asked (NaN kept, as
// the frameworks' relu keeps it, and +0 for -0 as oneDNN's relu steps in sol give).
__attribute__((target_clones("avx512f", "default"))) inline void rows(const float* w, const float* x,
                                                                        const float* b, float* y, long in,
                                                                        long first, long last, bool relu) {
    const long body = in - in % kLanes;
    long r = first;
    for (; r + 4 <= last; r += 4) {
        const float* w0 = w + r * in;
        const float* w1 = w0 + in;
        const float* w2 = w1 + in;
        const float* w3 = w2 + in;
        float a0[kLanes] = {}, a1[kLanes] = {}, a2[kLanes] = {}, a3[kLanes] = {};
        for (long k = 0; k < body; k += kLanes) {
            for (int l = 0; l < kLanes; ++l) {
                const float xv = x[k + l];
                a0[l] += w0[k + l] * xv;
                a1[l] += w1[k + l] * xv;
                a2[l] += w2[k + l] * xv;
                a3[l] += w3[k + l] * xv;
            }
        }
        float s[4] = {};
        for (int l = 0; l < kLanes; ++l) {
            s[0] += a0[l];
            s[1] += a1[l];
            s[2] += a2[l];
            s[3] += a3[l];
        }
        for (long k = body; k < in; ++k) {
            s[0] += w0[k] * x[k];
            s[1] += w1[k] * x[k];
            s[2] += w2[k] * x[k];
            s[3] += w3[k] * x[k];
        }
        for (int i = 0; i < 4; ++i) y[r + i] = s[i];
    }
    for (; r < last; ++r) {
        const float* wr = w + r * in;
        float s = 0.f;
        for (long k = 0; k < in; ++k) s += wr[k] * x[k];
        y[r] = s;
    }
    for (r = first; r < last; ++r) {
        float v = y[r] + (b ? b[r] : 0.f);
        if (relu && !(v > 0.f) && v == v) v = 0.f;  // NaN stays NaN; -0 becomes +0, as relu's other forms
        y[r] = v;
    }
}

}  // namespace gemv
}  // namespace sol

#pragma GCC pop_options
