// sol x86 runtime: the transforms of Winograd's F(2x2, 3x3) convolution (Lavin and Gray, 2015),
// included by sol_x86_onednn.cpp, which runs them around oneDNN batched matrix products.
//
// A 3x3, stride-1 convolution computes each 2x2 block of outputs (a tile) from a 4x4 block of
// inputs. In the transformed domain the 36 multiplies per tile and channel pair become 16: the
// input tile d becomes V = B^T d B, the filter g becomes U = G g G^T, the sixteen positions p of
// a tile are sixteen independent matrix products M[p] = V[p] U[p] over the channels, and the
// output tile is A^T M A. On this CPU that takes ResNet's 3x3 layers from oneDNN's direct
// kernel to 1.3-1.6x its speed (measured in the issue note); the weights take 16/9 of the room.
//
// Exact only where the inputs are finite: an infinity becomes inf - inf = NaN in the transforms
// where the direct sum would keep it. The network uses this only under its finite premise and
// keeps an exact twin for other inputs (sol_x86.render, sol_x86.libraries.winograd_fits).
//
// Activations are in nChw16c or nhwc (Layout), so a tile's block of 16 channels is one AVX-512
// register per pixel. The transformed tiles are laid out
// V[p][tile][channel] and M[p][tile][output channel]: row-major batches for oneDNN's matmul.
#pragma once
#include <cstddef>
#include <cstdint>

// The runtime library is built with -O2; these loops need -O3's full unrolling to keep the
// 4x4x16 tiles in registers (measured: the transforms took 1.5x as long at -O2), and AVX-512
// where the CPU has it (one clone per instruction set, chosen at load time).
#pragma GCC push_options
#pragma GCC optimize("O3")

namespace sol {
namespace winograd {

constexpr int kBlock = 16;  // channels per block of nChw16c
constexpr int kPositions = 16;

// Where a block of 16 channels of pixel (y, x) of image n starts, in floats: n * image + block
// index * block + y * row + x * pixel. Both of the layouts oneDNN's convolutions keep have whole
// blocks of 16 contiguous channels: nChw16c and, with C a multiple of 16, nhwc.
struct Layout {
    long image, block, row, pixel;
    static Layout nChw16c(long c, long h, long w) { return {c * h * w, h * w * 16, w * 16, 16}; }
    static Layout nhwc(long c, long h, long w) { return {h * w * c, 16, w * c, c}; }
};

struct Shape {
    long n, c, k, h, w, oh, ow, pad_top, pad_left;
    Layout in, out;
    long tiles_h() const { return (oh + 1) / 2; }
    long tiles_w() const { return (ow + 1) / 2; }
    long tiles() const { return n * tiles_h() * tiles_w(); }
};

// U[p][c][k] = G g G^T for the plain (K, C, 3, 3) filter g.
static void transform_weights(const Shape& s, const float* g, float* u) {
    for (long k = 0; k < s.k; ++k)
        for (long c = 0; c < s.c; ++c) {
            const float* f = g + (k * s.c + c) * 9;
            float t[4][3];
            for (int j = 0; j < 3; ++j) {
                float a = f[j], b = f[3 + j], d = f[6 + j];
                t[0][j] = a;
                t[1][j] = 0.5f * (a + b + d);
                t[2][j] = 0.5f * (a - b + d);
                t[3][j] = d;
            }
            for (int i = 0; i < 4; ++i) {
                float a = t[i][0], b = t[i][1], d = t[i][2];
                float row[4] = {a, 0.5f * (a + b + d), 0.5f * (a - b + d), d};
                for (int j = 0; j < 4; ++j) u[((i * 4 + j) * s.c + c) * s.k + k] = row[j];
            }
        }
}

// Tiles [first, last) of the input into V (``rows`` tiles per position, the chunk's
// row stride). Pixels outside the image are the convolution's zero padding.
__attribute__((target_clones("avx512f", "default")))
static void transform_input(const Shape& s, const float* src, long first, long last, float* v, long rows) {
    const long per_image = s.tiles_h() * s.tiles_w(), blocks = s.c / kBlock;
    for (long t = first; t < last; ++t) {
        const long n = t / per_image, r = t % per_image;
        const long h0 = 2 * (r / s.tiles_w()) - s.pad_top, w0 = 2 * (r % s.tiles_w()) - s.pad_left;
        for (long cb = 0; cb < blocks; ++cb) {
            const float* image = src + n * s.in.image + cb * s.in.block;
            float d[4][4][kBlock];
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j) {
                    const long y = h0 + i, x = w0 + j;
                    if (y >= 0 && y < s.h && x >= 0 && x < s.w) {
                        const float* p = image + y * s.in.row + x * s.in.pixel;
#pragma omp simd
                        for (int c = 0; c < kBlock; ++c) d[i][j][c] = p[c];
                    } else {
                        for (int c = 0; c < kBlock; ++c) d[i][j][c] = 0.f;
                    }
                }
            float e[4][4][kBlock];  // B^T d
            for (int j = 0; j < 4; ++j)
#pragma omp simd
                for (int c = 0; c < kBlock; ++c) {
                    e[0][j][c] = d[0][j][c] - d[2][j][c];
                    e[1][j][c] = d[1][j][c] + d[2][j][c];
                    e[2][j][c] = d[2][j][c] - d[1][j][c];
                    e[3][j][c] = d[1][j][c] - d[3][j][c];
                }
            float* out = v + (t - first) * s.c + cb * kBlock;
            const long step = rows * s.c;  // from one position's matrix to the next
            for (int i = 0; i < 4; ++i)  // (B^T d) B
#pragma omp simd
                for (int c = 0; c < kBlock; ++c) {
                    out[(i * 4 + 0) * step + c] = e[i][0][c] - e[i][2][c];
                    out[(i * 4 + 1) * step + c] = e[i][1][c] + e[i][2][c];
                    out[(i * 4 + 2) * step + c] = e[i][2][c] - e[i][1][c];
                    out[(i * 4 + 3) * step + c] = e[i][1][c] - e[i][3][c];
                }
        }
    }
}

// Tiles [first, last) of M into the output: A^T M A, plus the bias, plus ``add`` (the residual
// in the output's layout, or nullptr; it may be ``dst`` itself), then relu when asked. Relu keeps
// NaN (the frameworks' relu does) and gives +0 for -0.
__attribute__((target_clones("avx512f", "default")))
static void transform_output(const Shape& s, const float* m, long first, long last, long rows, const float* bias,
                             const float* add, bool relu, float* dst) {
    const long per_image = s.tiles_h() * s.tiles_w(), blocks = s.k / kBlock;
    const long step = rows * s.k;
    for (long t = first; t < last; ++t) {
        const long n = t / per_image, r = t % per_image;
        const long y0 = 2 * (r / s.tiles_w()), x0 = 2 * (r % s.tiles_w());
        for (long kb = 0; kb < blocks; ++kb) {
            const float* in = m + (t - first) * s.k + kb * kBlock;
            float q[2][4][kBlock];  // A^T M
            for (int j = 0; j < 4; ++j)
#pragma omp simd
                for (int c = 0; c < kBlock; ++c) {
                    const float m0 = in[(0 + j) * step + c], m1 = in[(4 + j) * step + c];
                    const float m2 = in[(8 + j) * step + c], m3 = in[(12 + j) * step + c];
                    q[0][j][c] = m0 + m1 + m2;
                    q[1][j][c] = m1 - m2 - m3;
                }
            const long base = n * s.out.image + kb * s.out.block;
            for (int i = 0; i < 2 && y0 + i < s.oh; ++i)
                for (int j = 0; j < 2 && x0 + j < s.ow; ++j) {  // (A^T M) A
                    const long at = base + (y0 + i) * s.out.row + (x0 + j) * s.out.pixel;
                    const float* extra = add ? add + at : nullptr;
                    float* o = dst + at;
#pragma omp simd
                    for (int c = 0; c < kBlock; ++c) {
                        float y = j == 0 ? q[i][0][c] + q[i][1][c] + q[i][2][c] : q[i][1][c] - q[i][2][c] - q[i][3][c];
                        y += bias[kb * kBlock + c];
                        if (extra) y += extra[c];
                        if (relu) y = y > 0.f ? y : (y == y ? 0.f : y);
                        o[c] = y;
                    }
                }
        }
    }
}

}  // namespace winograd
}  // namespace sol

#pragma GCC pop_options
