// sol x86 runtime: oneDNN primitives for the library groups of a generated network.
//
// Each op is created once (sol_create): primitive descriptors chosen with format "any" so that
// oneDNN picks its fastest (blocked or channels-last) layout, weights reordered into that layout
// once, epilogues attached as post-ops. At run time an op reorders its plain (row-major, NCHW)
// input into the chosen layout only when the two differ, executes, and reorders back.
//
// This header is what a generated network sees: small handle classes (the network embeds them by
// value: ``sol::Conv op3;``) and the values it passes. Everything else, the ops' state in
// oneDNN's C++ types included, is in sol_x86_onednn.cpp, compiled once into
// libsol_x86_onednn.so and shared by every network. Compiling that glue inline cost each network
// seconds of g++; so did parsing dnnl.hpp (only the C enums of dnnl_types.h are needed here) and
// building std::vector arguments (dims and post-op lists are fixed-size values and initializer
// lists here, built from constants).
#pragma once
#include <oneapi/dnnl/dnnl_types.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace sol {

namespace detail {
class LibraryOp;
}

// A tensor's dims as a network passes them ({1, 64, 56, 56}): up to DNNL_MAX_NDIMS values.
struct Dims {
    int64_t v[DNNL_MAX_NDIMS];
    int n = 0;
    Dims() = default;
    Dims(std::initializer_list<int64_t> dims);  // throws beyond DNNL_MAX_NDIMS
};

// One post-op of a library group's epilogue, in order.
struct PostOp {
    enum Kind { ELTWISE, BINARY, SUM } kind;
    dnnl_alg_kind_t alg = dnnl_alg_kind_undef;
    float alpha = 0.f, beta = 0.f;
    // BINARY: the operand's dims as seen by oneDNN (broadcast dims are 1).
    Dims dims;
    // The network guarantees a finite operand (sol_x86.libraries, finite-only steps): relu may
    // then be oneDNN's own max(x, 0), which is exact for every finite x, instead of the NaN-keeping
    // form that costs an exp per negative element.
    bool finite_only = false;
};

PostOp eltwise(dnnl_alg_kind_t alg, float alpha = 0.f, float beta = 0.f, bool finite_only = false);
PostOp binary(dnnl_alg_kind_t alg, const Dims& dims);
PostOp sum();

// Scratch memory shared by every op of one network: ops run one after another, so two buffers
// (converted input, converted output) of the largest size needed are enough.
struct Scratch {
    size_t src_bytes = 0, dst_bytes = 0, wei_bytes = 0;
    std::vector<char> src, dst, wei;  // wei: run-time weights in the layout a primitive chose
    // oneDNN's own scratchpad for every primitive of the network (user mode).
    size_t pad_bytes = 0;
    std::vector<char> pad;
    // The Winograd convolutions' transformed tiles, one slice per thread (WinogradConv).
    size_t tile_bytes = 0;
    std::vector<char> tiles;
    void need(size_t s, size_t d);
    void need_pad(size_t bytes);
    void need_tiles(size_t bytes);
    void allocate();
    void* wei_ptr();
    void* pad_ptr();
    void* src_ptr();
    void* dst_ptr();
    void* tiles_ptr();
    static void* align(char* p);
};

// A library op: owns its state (the primitive, its layouts and reorders) in the library.
class LibraryOp {
  public:
    virtual ~LibraryOp();
    LibraryOp(const LibraryOp&) = delete;
    LibraryOp& operator=(const LibraryOp&) = delete;

    // One reader of a library op's result: another library op, reading it as its input (SRC)
    // or as the full-size operand of its residual-sum post-op (RESIDUAL).
    struct Reader {
        enum Role { SRC, RESIDUAL } role;
        LibraryOp* op;
    };

    // Layout propagation: when every reader of this op's result is a library op that wants it in
    // the very layout this op computes it in (its input layout, or for a residual its own output
    // layout), the tensor stays in that layout in between: no reorder out here and none back in
    // at each reader. Checked at load time, because only oneDNN knows the layouts it picked;
    // ``buffer_bytes`` is the plain tensor's buffer, which the native one must fit. Returns
    // whether the layout is kept.
    bool keep_native(std::initializer_list<Reader> readers, size_t buffer_bytes);

    // What runs, for reports: the implementation oneDNN chose and where layouts are converted.
    std::string describe() const;
    // Appends "<label>: <describe()>\n" (a call per op: string concatenation inline in the
    // network cost g++ more than the rest of a ResNet-50's sol_create).
    void describe_to(std::string& out, const char* label) const;

  protected:
    explicit LibraryOp(detail::LibraryOp* impl);
    detail::LibraryOp* impl_;
};

// A library op with weights (and optionally a bias) of its own: convolution and dense. Weights
// given at init are placed once in the primitive's layout; run-time weights (init's w ==
// nullptr, training) arrive with every run and are reordered into it there.
class WeightedOp : public LibraryOp {
  public:
    void run(const void* src, void* dst, std::initializer_list<const void*> binary, const void* residual,
             Scratch& scratch, const void* runtime_weights = nullptr);

  protected:
    using LibraryOp::LibraryOp;
};

// 2-D convolution, NCHW at the interface; groups and asymmetric padding supported.
class Conv : public WeightedOp {
  public:
    Conv();
    // src_nhwc / dst_nhwc: that tensor is (N, H, W, C) in memory (sol's conv2d_nhwc); the dims
    // are still given as (N, C, H, W). winograd: compute it with Winograd's F(2x2, 3x3)
    // (sol_x86_winograd.hpp) where the shape allows; exact only for finite inputs, so the
    // network asks for it only under its finite premise. blocked: compute it in oneDNN's
    // 16-channel blocked layout (nChw16c), which the network keeps between the convolutions of a
    // chain (keep_native) where their own layouts would be channels-last.
    void init(const Dims& src, const Dims& weights, const Dims& dst, const Dims& strides,
              const Dims& dilation_minus_one, const Dims& pad_l, const Dims& pad_r, long groups,
              const void* w, const void* bias, std::initializer_list<PostOp> post, Scratch& scratch,
              bool src_nhwc = false, bool dst_nhwc = false, bool winograd = false, bool blocked = false);
};

// 2-D transposed convolution (oneDNN's deconvolution), NCHW at the interface. The weight arrives
// as PyTorch stores it, (C, O/G, kh, kw); output_padding is a smaller (possibly negative) right
// padding.
class Deconv : public WeightedOp {
  public:
    Deconv();
    void init(const Dims& src, const Dims& weights, const Dims& dst, const Dims& strides,
              const Dims& dilation_minus_one, const Dims& pad_l, const Dims& pad_r, long groups,
              const void* w, const void* bias, std::initializer_list<PostOp> post, Scratch& scratch);
};

// y = x @ W^T (+ bias): a dense / linear layer with weights of shape (out, in). The batch
// dimensions of x are folded into the rows.
class Dense : public WeightedOp {
  public:
    Dense();
    void init(long rows, long in, long out, const void* w, const void* bias, std::initializer_list<PostOp> post,
              Scratch& scratch);
};

// Batched matrix product of two run-time tensors, NumPy broadcasting over the batch dims (the
// shapes arrive padded to one rank).
class MatMul : public LibraryOp {
  public:
    MatMul();
    void init(const Dims& a, const Dims& b, const Dims& dst, std::initializer_list<PostOp> post, Scratch& scratch);
    void run(const void* a, const void* b, void* dst, std::initializer_list<const void*> binary,
             const void* residual, Scratch& scratch);
};

// Gradients of a convolution (training): oneDNN's backward-data and backward-weights primitives.
class ConvBackward : public LibraryOp {
  public:
    ConvBackward();
    // data == true: (grad_y, weights) -> grad_x; false: (x, grad_y) -> grad_w.
    void init(bool data, const Dims& src, const Dims& weights, const Dims& dst, const Dims& strides,
              const Dims& dilation_minus_one, const Dims& pad_l, const Dims& pad_r, long groups);
    void run(const void* a, const void* b, void* out);
    // Input ``mine`` (0: a, 1: b) is the tensor that input ``theirs`` of ``owner`` reads, and
    // ``owner`` runs first in every call: when both convert it into the same layout, this op
    // reads the owner's converted copy instead of converting it again. Returns whether it does.
    bool share_input(int mine, ConvBackward& owner, int theirs);
};

}  // namespace sol
