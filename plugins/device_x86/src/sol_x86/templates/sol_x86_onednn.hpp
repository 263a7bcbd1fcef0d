// sol x86 runtime: oneDNN primitives for the library groups of a generated network.
//
// Each op is created once (sol_create): primitive descriptors chosen with format "any" so that
// oneDNN picks its fastest (blocked or channels-last) layout, weights reordered into that layout
// once, epilogues attached as post-ops. At run time an op reorders its plain (row-major, NCHW)
// input into the chosen layout only when the two differ, executes, and reorders back.
//
// Declarations only: the class layouts stay here (a generated network embeds its ops by value),
// every body is in sol_x86_onednn.cpp, compiled once into libsol_x86_onednn.so and shared by all
// networks (compiling these bodies inline cost each network seconds of g++). Constructors and
// destructors are out of line too, so a network's translation unit instantiates none of
// dnnl.hpp's handle code: it only calls into the library. The arguments a network passes are
// cheap to build for the same reason: dims and post-op lists are fixed-size values and
// initializer lists (built from constants), not std::vectors (each of which g++ expanded into an
// allocation, a copy and an exception-cleanup path per argument of every call, for seconds of
// -O3 work on a network with fifty convolutions).
#pragma once
#include <oneapi/dnnl/dnnl.hpp>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <unordered_map>
#include <vector>

namespace sol {

using dnnl::memory;

// A tensor's dims as a network passes them ({1, 64, 56, 56}): up to DNNL_MAX_NDIMS values.
struct Dims {
    int64_t v[DNNL_MAX_NDIMS];
    int n = 0;
    Dims() = default;
    Dims(std::initializer_list<int64_t> dims);  // throws beyond DNNL_MAX_NDIMS
    memory::dims vec() const;
};

// One post-op of a library group's epilogue, in order.
struct PostOp {
    enum Kind { ELTWISE, BINARY, SUM } kind;
    dnnl::algorithm alg = dnnl::algorithm::undef;
    float alpha = 0.f, beta = 0.f;
    // BINARY: the operand's dims as seen by oneDNN (broadcast dims are 1).
    Dims dims;
};

PostOp eltwise(dnnl::algorithm alg, float alpha = 0.f, float beta = 0.f);
PostOp binary(dnnl::algorithm alg, const Dims& dims);
PostOp sum();

// Process-wide engine and stream: creating them is not free and one CPU engine serves all.
struct Context {
    dnnl::engine eng;
    dnnl::stream strm;
    Context();
    static Context& get();
};

// Scratch memory shared by every op of one network: ops run one after another, so two buffers
// (converted input, converted output) of the largest size needed are enough.
struct Scratch {
    size_t src_bytes = 0, dst_bytes = 0, wei_bytes = 0;
    std::vector<char> src, dst, wei;  // wei: run-time weights in the layout a primitive chose
    // oneDNN's own scratchpad for every primitive of the network (user mode, see make_attr).
    size_t pad_bytes = 0;
    std::vector<char> pad;
    Scratch();
    ~Scratch();
    void need(size_t s, size_t d);
    void need_pad(const memory::desc& md);
    void allocate();
    void* wei_ptr();
    void* pad_ptr();
    void* src_ptr();
    void* dst_ptr();
    static void* align(char* p);
};

// A library op: the primitive plus the reorders around it.
class LibraryOp {
  public:
    LibraryOp();
    virtual ~LibraryOp();

    // One reader of a library op's result: another library op, reading it as its input (SRC)
    // or as the full-size operand of its residual-sum post-op (RESIDUAL).
    struct Reader {
        enum Role { SRC, RESIDUAL } role;
        LibraryOp* op;
    };

    // Layout propagation: when every reader of this op's result is a library op that wants it in
    // the very layout this op computes it in (its input layout, or for a residual its own output
    // layout), the tensor stays in that layout in between: no reorder out here and none back in
    // at each reader. Checked here, at load time, because only oneDNN knows the layouts it
    // picked; ``buffer_bytes`` is the plain tensor's buffer, which the native one must fit.
    // Returns whether the layout is kept.
    bool keep_native(std::initializer_list<Reader> readers, size_t buffer_bytes);

    // What runs, for reports: the implementation oneDNN chose and where layouts are converted.
    std::string describe() const;
    // Appends "<label>: <describe()>\n" (one call per op in sol_create: string concatenation
    // inline in the network cost g++ more than all the network's other code).
    void describe_to(std::string& out, const char* label) const;

  protected:
    std::string impl_;
    dnnl::primitive prim_;
    memory::desc src_plain_, dst_plain_, src_md_, dst_md_;
    memory weights_, bias_;
    memory::desc weights_md_;
    memory::desc pad_md_;  // the primitive's scratchpad (user mode), in Scratch::pad at run time

    // Weights that arrive with every call (training: the framework's parameters) come in the
    // plain layout; the primitive was still created for the layout it prefers ("any"), and
    // they are reordered into it here, into the network's scratch (see runtime_weights).
    memory::desc w_user_md_;
    bool reorder_w_ = false;
    dnnl::reorder w_in_;

    void runtime_weights(const memory::desc& w_user, Scratch& scratch);
    memory weights(const void* runtime, Scratch& scratch) const;

    std::vector<PostOp> post_;
    bool reorder_src_ = false, reorder_dst_ = false;
    bool keep_dst_native_ = false, src_is_native_ = false;
    bool residual_is_native_ = false;  // the residual-sum operand arrives in dst_md_'s layout
    dnnl::reorder src_in_, dst_out_, sum_in_;

    void prepare_reorders(Scratch& scratch);
    memory place_weights(const memory::desc& user, const memory::desc& want, const void* data);

    // The memory objects a run binds, made once (at the first run, when the layout links are
    // decided) and re-pointed at each call's buffers: constructing a dnnl::memory costs a few
    // microseconds, which adds up over the many small ops of a batch-1 network. Runs of one
    // network are serialized (Net::lock), so one set per op is enough.
    struct Bound {
        bool ready = false;
        memory src_user, dst_user, src, dst, residual;
        std::vector<memory> binary;
    } bound_;

    void bind_memories();

    // Run with plain input/output pointers. ``binary`` holds one pointer per BINARY post-op,
    // ``residual`` the SUM operand (or nullptr).
    void execute(std::unordered_map<int, memory>& args, const void* src, void* dst,
                 std::initializer_list<const void*> binary, const void* residual, Scratch& scratch);
};

// A library op with weights (and optionally a bias) of its own: convolution and dense.
class WeightedOp : public LibraryOp {
  public:
    WeightedOp();
    ~WeightedOp() override;
    void run(const void* src, void* dst, std::initializer_list<const void*> binary, const void* residual,
             Scratch& scratch, const void* runtime_weights = nullptr);

  protected:
    // Weights and bias given at load time are copied into the layouts the primitive wants.
    void place(const memory::desc& w_user, const void* w, const memory::desc& b_user, const memory::desc& b_want,
               const void* bias, Scratch& scratch);
};

// 2-D convolution, NCHW at the interface; groups and asymmetric padding supported.
class Conv : public WeightedOp {
  public:
    Conv();
    ~Conv() override;
    void init(const Dims& src, const Dims& weights, const Dims& dst, const Dims& strides,
              const Dims& dilation_minus_one, const Dims& pad_l, const Dims& pad_r, long groups,
              const void* w, const void* bias, std::initializer_list<PostOp> post, Scratch& scratch);
};

// 2-D transposed convolution (oneDNN's deconvolution), NCHW at the interface. The weight arrives
// as PyTorch stores it, (C, O/G, kh, kw); output_padding is a smaller (possibly negative) right
// padding.
class Deconv : public WeightedOp {
  public:
    Deconv();
    ~Deconv() override;
    void init(const Dims& src, const Dims& weights, const Dims& dst, const Dims& strides,
              const Dims& dilation_minus_one, const Dims& pad_l, const Dims& pad_r, long groups,
              const void* w, const void* bias, std::initializer_list<PostOp> post, Scratch& scratch);
};

// y = x @ W^T (+ bias): a dense / linear layer with static weights of shape (out, in). The batch
// dimensions of x are folded into the rows.
class Dense : public WeightedOp {
  public:
    Dense();
    ~Dense() override;
    void init(long rows, long in, long out, const void* w, const void* bias, std::initializer_list<PostOp> post,
              Scratch& scratch);
};

// Batched matrix product of two run-time tensors, NumPy broadcasting over the batch dims (the
// shapes arrive padded to one rank).
class MatMul : public LibraryOp {
  public:
    MatMul();
    ~MatMul() override;
    void init(const Dims& a, const Dims& b, const Dims& dst, std::initializer_list<PostOp> post, Scratch& scratch);
    void run(const void* a, const void* b, void* dst, std::initializer_list<const void*> binary,
             const void* residual, Scratch& scratch);

  private:
    memory::desc b_md_;
};

// Gradients of a convolution (training): oneDNN's backward-data and backward-weights primitives.
class ConvBackward : public LibraryOp {
  public:
    ConvBackward();
    ~ConvBackward() override;
    // data == true: (grad_y, weights) -> grad_x; false: (x, grad_y) -> grad_w.
    void init(bool data, const Dims& src, const Dims& weights, const Dims& dst, const Dims& strides,
              const Dims& dilation_minus_one, const Dims& pad_l, const Dims& pad_r, long groups);
    void run(const void* a, const void* b, void* out);

  private:
    // One operand: its plain layout, the primitive's, and a buffer when they differ.
    struct Operand {
        memory::desc user, want;
        bool convert = false;
        std::vector<char> buffer;
        dnnl::reorder step;
        Operand();
        ~Operand();
        void init(const memory::desc& u, const memory::desc& w, bool input);
        void* data();
        memory in(const void* p);      // the operand as the primitive wants it
        memory target(void* p);        // where the primitive writes the result
        void out(memory& m, void* p);  // the result back in the plain layout
    };
    bool data_ = true;
    Operand a_, b_, out_;
    std::vector<char> pad_;  // this primitive's scratchpad (backward ops are not in Scratch)
    void own_pad(const memory::desc& md);
};

}  // namespace sol
