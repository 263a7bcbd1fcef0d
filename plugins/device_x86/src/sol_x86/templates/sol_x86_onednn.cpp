// sol x86 runtime: the bodies of sol_x86_onednn.hpp (see there). Compiled once per compiler and
// oneDNN version into libsol_x86_onednn.so (sol_x86.compiler.RuntimeLibrary), which every
// generated network links against. Not hot code: oneDNN does the work, so -O2 is enough.
#include "sol_x86_onednn.hpp"

#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

#include "sol_x86_gemv.hpp"
#include "sol_x86_winograd.hpp"

namespace sol {

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

Dims::Dims(std::initializer_list<int64_t> dims) {
    if (dims.size() > DNNL_MAX_NDIMS)
        throw std::runtime_error("sol: rank " + std::to_string(dims.size()) + " not supported by oneDNN ops");
    for (int64_t d : dims) v[n++] = d;
}
static memory::dims vec(const Dims& d) { return memory::dims(d.v, d.v + d.n); }

PostOp eltwise(dnnl_alg_kind_t alg, float alpha, float beta, bool finite_only) {
    PostOp p{PostOp::ELTWISE};
    p.alg = alg; p.alpha = alpha; p.beta = beta; p.finite_only = finite_only;
    return p;
}
PostOp binary(dnnl_alg_kind_t alg, const Dims& dims) {
    PostOp p{PostOp::BINARY};
    p.alg = alg; p.dims = dims;
    return p;
}
PostOp sum() { return PostOp{PostOp::SUM}; }

static tag plain_tag(size_t rank) {
    switch (rank) {
        case 1: return tag::a;
        case 2: return tag::ab;
        case 3: return tag::abc;
        case 4: return tag::abcd;
        case 5: return tag::abcde;
        case 6: return tag::abcdef;
        default: throw std::runtime_error("sol: rank " + std::to_string(rank) + " not supported by oneDNN ops");
    }
}
static memory::desc plain(const memory::dims& d) { return memory::desc(d, dt::f32, plain_tag(d.size())); }

// --- Context, Scratch ---------------------------------------------------------------------------
// Process-wide engine and stream: creating them is not free and one CPU engine serves all.
struct Context {
    dnnl::engine eng{dnnl::engine::kind::cpu, 0};
    dnnl::stream strm{eng};
    static Context& get() {
        static Context ctx;
        return ctx;
    }
};

void Scratch::need(size_t s, size_t d) {
    src_bytes = std::max(src_bytes, s);
    dst_bytes = std::max(dst_bytes, d);
}
void Scratch::need_pad(size_t bytes) { pad_bytes = std::max(pad_bytes, bytes); }
void Scratch::need_tiles(size_t bytes) { tile_bytes = std::max(tile_bytes, bytes); }
void Scratch::allocate() {
    if (tile_bytes) tiles.resize(tile_bytes + 64);
    src.resize(src_bytes + 64);
    dst.resize(dst_bytes + 64);
    pad.resize(pad_bytes + 64);
    wei.resize(wei_bytes + 64);
}
void* Scratch::wei_ptr() { return align(wei.data()); }
void* Scratch::pad_ptr() { return align(pad.data()); }
void* Scratch::src_ptr() { return align(src.data()); }
void* Scratch::dst_ptr() { return align(dst.data()); }
void* Scratch::tiles_ptr() { return align(tiles.data()); }
void* Scratch::align(char* p) {
    return reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t(63));
}

// oneDNN computes relu with slope 0 as max(x, 0), which turns NaN into 0 where the frameworks keep
// NaN. elu with alpha 0 is x > 0 ? x : 0 * (exp(x) - 1): NaN stays NaN (and inf inf); the linear
// step x * 1 + 0 then turns its -0 for x < 0 into relu's +0. One sol post-op, two of oneDNN's.
// Not where the network guarantees a finite operand (finite_only): oneDNN's max is exact there.
static bool nan_safe_relu(const PostOp& p) {
    return p.kind == PostOp::ELTWISE && p.alg == dnnl_eltwise_relu && p.alpha == 0.f && !p.finite_only;
}
// The position of sol's post-op i among oneDNN's (binary operands are passed by that position).
static int onednn_index(const std::vector<PostOp>& ops, size_t i) {
    int k = int(i);
    for (size_t j = 0; j < i; ++j) k += nan_safe_relu(ops[j]) ? 1 : 0;
    return k;
}

static dnnl::primitive_attr make_attr(const std::vector<PostOp>& ops) {
    dnnl::post_ops po;
    for (const PostOp& p : ops) {
        if (nan_safe_relu(p)) {
            po.append_eltwise(dnnl::algorithm::eltwise_elu, 0.f, 0.f);
            po.append_eltwise(dnnl::algorithm::eltwise_linear, 1.f, 0.f);
        } else if (p.kind == PostOp::ELTWISE) po.append_eltwise(dnnl::algorithm(p.alg), p.alpha, p.beta);
        else if (p.kind == PostOp::SUM) po.append_sum(1.f);
        else po.append_binary(dnnl::algorithm(p.alg), plain(vec(p.dims)));
    }
    dnnl::primitive_attr attr;
    attr.set_post_ops(po);
    // oneDNN's default ("library") scratchpad belongs to the thread that created the primitive:
    // run from another thread (a framework's worker or autograd thread) the primitive overran it
    // and crashed. With a user scratchpad the network passes its own buffer at every run.
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    return attr;
}

namespace detail {

// A library op: the primitive plus the reorders around it.
class LibraryOp {
  public:
    virtual ~LibraryOp() = default;

    struct Reader {
        sol::LibraryOp::Reader::Role role;
        LibraryOp* op;
    };

    // Layout propagation: when every reader of this op's result is a library op that wants it in
    // the very layout this op computes it in (its input layout, or for a residual its own output
    // layout), the tensor stays in that layout in between: no reorder out here and none back in
    // at each reader. Checked here, at load time, because only oneDNN knows the layouts it
    // picked; ``buffer_bytes`` is the plain tensor's buffer, which the native one must fit.
    // Returns whether the layout is kept.
    bool keep_native(const std::vector<Reader>& readers, size_t buffer_bytes);

    // What runs, for reports: the implementation oneDNN chose and where layouts are converted.
    virtual std::string describe() const;

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
    virtual void run(const void* src, void* dst, std::initializer_list<const void*> binary, const void* residual,
                     Scratch& scratch, const void* runtime_weights = nullptr);

  protected:
    // Weights and bias given at load time are copied into the layouts the primitive wants.
    void place(const memory::desc& w_user, const void* w, const memory::desc& b_user, const memory::desc& b_want,
               const void* bias, Scratch& scratch);

    // What every weighted op's init ends with: take the layouts oneDNN chose in ``pd``, place
    // the weights (and bias) in them, make the primitive, plan its reorders and scratchpad.
    template <class Primitive, class PrimitiveDesc>
    void adopt(const PrimitiveDesc& pd, const memory::desc& w_user, const void* w, const memory::desc& b_md,
               const void* bias, Scratch& scratch) {
        impl_ = pd.impl_info_str();
        src_md_ = pd.src_desc();
        dst_md_ = pd.dst_desc();
        weights_md_ = pd.weights_desc();
        place(w_user, w, b_md, pd.bias_desc(), bias, scratch);
        prim_ = Primitive(pd);
        prepare_reorders(scratch);
        scratch.need_pad((pad_md_ = pd.scratchpad_desc()).get_size());
    }
};

// 2-D convolution, NCHW at the interface; groups and asymmetric padding supported.
class Conv : public WeightedOp {
  public:
    void init(const Dims& src, const Dims& weights, const Dims& dst, const Dims& strides,
              const Dims& dilation_minus_one, const Dims& pad_l, const Dims& pad_r, long groups,
              const void* w, const void* bias, std::initializer_list<PostOp> post, Scratch& scratch,
              bool src_nhwc, bool dst_nhwc, bool blocked);
};

// A 3x3, stride-1 convolution by Winograd's F(2x2, 3x3) (sol_x86_winograd.hpp): the input
// and output channels-last as given, else in nChw16c, which other library ops keep and read as
// oneDNN's own convolutions do;
// the sixteen products of a chunk of tiles are one batched oneDNN matmul. Chunks are split over
// the threads, each with its slice of Scratch::tiles, so a chunk's V and M stay in its core's
// L2 between the transforms and the product. Epilogue: bias, then the residual sum, then relu
// (the forms fits() accepts).
class WinogradConv : public WeightedOp {
  public:
    static bool fits(const Dims& src, const Dims& weights, const Dims& dst, const Dims& strides,
                     const Dims& dilation_minus_one, long groups, std::initializer_list<PostOp> post);
    void init(const Dims& src, const Dims& weights, const Dims& dst, const Dims& pad_l, const void* w,
              const void* bias, std::initializer_list<PostOp> post, Scratch& scratch, bool src_nhwc, bool dst_nhwc);
    void run(const void* src, void* dst, std::initializer_list<const void*> binary, const void* residual,
             Scratch& scratch, const void* runtime_weights = nullptr) override;

  private:
    winograd::Shape shape_{};
    long rows_ = 0, chunks_ = 0;  // tiles per chunk, chunks
    int threads_ = 1;             // slices made at init (at most this many threads run)
    size_t m_at_ = 0, pad_at_ = 0, slice_ = 0;  // offsets in a thread's slice, and its size
    bool relu_ = false;
    std::vector<float> bias_values_;
    dnnl::matmul product_;
    memory::desc v_md_, m_md_, product_pad_md_;
    memory u_;
    struct Lane {
        dnnl::stream stream;
        memory v, m, pad;
    };
    std::vector<Lane> lanes_;  // per thread, bound to its slice at the first run
    void* lanes_at_ = nullptr;
};

// 2-D transposed convolution (oneDNN's deconvolution), NCHW at the interface. The weight arrives
// as PyTorch stores it, (C, O/G, kh, kw); output_padding is a smaller (possibly negative) right
// padding.
class Deconv : public WeightedOp {
  public:
    void init(const Dims& src, const Dims& weights, const Dims& dst, const Dims& strides,
              const Dims& dilation_minus_one, const Dims& pad_l, const Dims& pad_r, long groups,
              const void* w, const void* bias, std::initializer_list<PostOp> post, Scratch& scratch);
};

// y = x @ W^T (+ bias): a dense / linear layer with static weights of shape (out, in). The batch
// dimensions of x are folded into the rows.
class Dense : public WeightedOp {
  public:
    void init(long rows, long in, long out, const void* w, const void* bias, std::initializer_list<PostOp> post,
              Scratch& scratch);
};

// A dense layer on one row with static weights (sol_x86_gemv.hpp): the weights stream once per
// call, so the rate of that stream is its time; oneDNN's one-row matmul reaches about 60% of it.
// Epilogue: bias, then relu (the forms fits() accepts).
class GemvDense : public WeightedOp {
  public:
    static bool fits(long rows, const void* w, std::initializer_list<PostOp> post);
    void init(long in, long out, const void* w, const void* bias, std::initializer_list<PostOp> post);
    void run(const void* src, void* dst, std::initializer_list<const void*> binary, const void* residual,
             Scratch& scratch, const void* runtime_weights = nullptr) override;

  private:
    long in_ = 0, out_ = 0;
    bool relu_ = false;
    std::vector<float> w_, b_;  // the frameworks' (out, in) layout; a copy, as oneDNN's would be
};

// Batched matrix product of two run-time tensors, NumPy broadcasting over the batch dims (the
// shapes arrive padded to one rank).
class MatMul : public LibraryOp {
  public:
    void init(const Dims& a, const Dims& b, const Dims& dst, std::initializer_list<PostOp> post, Scratch& scratch);
    void run(const void* a, const void* b, void* dst, std::initializer_list<const void*> binary,
             const void* residual, Scratch& scratch);

  private:
    memory::desc b_md_;
};

// Gradients of a convolution (training): oneDNN's backward-data and backward-weights primitives.
class ConvBackward : public LibraryOp {
  public:
    // data == true: (grad_y, weights) -> grad_x; false: (x, grad_y) -> grad_w.
    void init(bool data, const Dims& src, const Dims& weights, const Dims& dst, const Dims& strides,
              const Dims& dilation_minus_one, const Dims& pad_l, const Dims& pad_r, long groups);
    void run(const void* a, const void* b, void* out);

    // Input ``mine`` (0: a, 1: b) of this op is the very tensor that input ``theirs`` of
    // ``owner`` reads, and ``owner`` runs before this op in every call of the network (the
    // network says so: render.py's shared_inputs): when both want it in the same non-plain
    // layout, this op reads the owner's converted copy instead of converting it again (a conv's
    // output gradient is read by its backward-data and its backward-weights op, a block's input
    // by the backward-weights ops of the convs it feeds). Returns whether the copy is shared.
    bool share_input(int mine, ConvBackward& owner, int theirs);
    std::string describe() const override;

  private:
    // One operand: its plain layout, the primitive's, and a buffer when they differ.
    struct Operand {
        memory::desc user, want;
        bool convert = false;
        std::vector<char> buffer;
        dnnl::reorder step;
        // Sharing a converted input (share_input). Owner side: ``from`` is the plain buffer the
        // copy in ``buffer`` was converted from, valid for ``readers_left`` more borrowers
        // (each takes one; the last one, or the owner's next conversion, invalidates it).
        // Borrower side: ``lender`` is the owner's operand; when its copy is not valid for this
        // very buffer the borrower converts on its own (never a stale copy).
        const void* from = nullptr;
        int borrowers = 0, readers_left = 0;
        Operand* lender = nullptr;
        void init(const memory::desc& u, const memory::desc& w, bool input);
        void* data();
        memory in(const void* p);      // the operand as the primitive wants it
        memory target(void* p);        // where the primitive writes the result
        void out(memory& m, void* p);  // the result back in the plain layout
    };
    bool data_ = true;
    Operand a_, b_, out_;
    Operand& input(int i) { return i == 0 ? a_ : b_; }
    std::vector<char> pad_;  // this primitive's scratchpad (backward ops are not in Scratch)
    void own_pad(const memory::desc& md);
};
}  // namespace detail

// --- LibraryOp ----------------------------------------------------------------------------------

bool detail::LibraryOp::keep_native(const std::vector<Reader>& readers, size_t buffer_bytes) {
    if (!reorder_dst_ || dst_md_.get_size() > buffer_bytes) return false;
    for (const Reader& r : readers) {
        const memory::desc& want = r.role == sol::LibraryOp::Reader::SRC ? r.op->src_md_ : r.op->dst_md_;
        bool converts = r.role == sol::LibraryOp::Reader::SRC ? r.op->reorder_src_ : r.op->reorder_dst_;
        if (!converts || want != dst_md_) return false;
    }
    keep_dst_native_ = true;
    for (const Reader& r : readers)
        (r.role == sol::LibraryOp::Reader::SRC ? r.op->src_is_native_ : r.op->residual_is_native_) = true;
    return true;
}

std::string detail::LibraryOp::describe() const {
    auto side = [](bool reorder, bool native) { return native ? "kept" : reorder ? "reordered" : "plain"; };
    return impl_ + " (input " + side(reorder_src_, src_is_native_) + ", output " +
           side(reorder_dst_, keep_dst_native_) + (residual_is_native_ ? ", residual kept" : "") + ")";
}

// A plain-weights primitive is the slow one: for a 1x1 convolution oneDNN 3.2 then falls back to
// gemm with a reference post-op path, about 10x slower than the blocked kernel plus this reorder.
void detail::LibraryOp::runtime_weights(const memory::desc& w_user, Scratch& scratch) {
    w_user_md_ = w_user;
    reorder_w_ = weights_md_ != w_user;
    if (reorder_w_) {
        auto& eng = Context::get().eng;
        w_in_ = dnnl::reorder(memory(w_user, eng, nullptr), memory(weights_md_, eng, nullptr));
        scratch.wei_bytes = std::max(scratch.wei_bytes, weights_md_.get_size());
    }
}

memory detail::LibraryOp::weights(const void* runtime, Scratch& scratch) const {
    if (!runtime) return weights_;
    auto& ctx = Context::get();
    if (!reorder_w_) return memory(weights_md_, ctx.eng, const_cast<void*>(runtime));
    memory user(w_user_md_, ctx.eng, const_cast<void*>(runtime));
    memory mine(weights_md_, ctx.eng, scratch.wei_ptr());
    w_in_.execute(ctx.strm, user, mine);
    return mine;
}

void detail::LibraryOp::prepare_reorders(Scratch& scratch) {
    auto& eng = Context::get().eng;
    reorder_src_ = src_md_ != src_plain_;
    reorder_dst_ = dst_md_ != dst_plain_;
    if (reorder_src_) src_in_ = dnnl::reorder(memory(src_plain_, eng, nullptr), memory(src_md_, eng, nullptr));
    if (reorder_dst_) {
        dst_out_ = dnnl::reorder(memory(dst_md_, eng, nullptr), memory(dst_plain_, eng, nullptr));
        sum_in_ = dnnl::reorder(memory(dst_plain_, eng, nullptr), memory(dst_md_, eng, nullptr));
    }
    scratch.need(reorder_src_ ? src_md_.get_size() : 0, reorder_dst_ ? dst_md_.get_size() : 0);
}

memory detail::LibraryOp::place_weights(const memory::desc& user, const memory::desc& want, const void* data) {
    auto& ctx = Context::get();
    memory src(user, ctx.eng, const_cast<void*>(data));
    memory dst(want, ctx.eng);  // owned: the weights live in the op from now on
    dnnl::reorder(src, dst).execute(ctx.strm, src, dst);
    ctx.strm.wait();
    return dst;
}

void detail::LibraryOp::bind_memories() {
    auto& eng = Context::get().eng;
    bound_.src_user = memory(src_plain_, eng, nullptr);
    bound_.dst_user = memory(dst_plain_, eng, nullptr);
    // Where no layout differs, the primitive reads/writes the caller's buffers directly.
    bound_.src = src_is_native_ || reorder_src_ ? memory(src_md_, eng, nullptr) : bound_.src_user;
    bound_.dst = keep_dst_native_ || reorder_dst_ ? memory(dst_md_, eng, nullptr) : bound_.dst_user;
    bound_.residual = memory(dst_plain_, eng, nullptr);
    for (const PostOp& p : post_)
        if (p.kind == PostOp::BINARY) bound_.binary.push_back(memory(plain(vec(p.dims)), eng, nullptr));
    bound_.ready = true;
}

void detail::LibraryOp::execute(std::unordered_map<int, memory>& args, const void* src, void* dst,
                        std::initializer_list<const void*> binary, const void* residual, Scratch& scratch) {
    auto& ctx = Context::get();
    if (!bound_.ready) bind_memories();
    memory &src_user = bound_.src_user, &dst_user = bound_.dst_user;
    memory &src_mem = bound_.src, &dst_mem = bound_.dst;
    src_user.set_data_handle(const_cast<void*>(src));
    dst_user.set_data_handle(dst);
    if (src_is_native_) {
        src_mem.set_data_handle(const_cast<void*>(src));
    } else if (reorder_src_) {
        src_mem.set_data_handle(scratch.src_ptr());
        src_in_.execute(ctx.strm, src_user, src_mem);
    }
    if (keep_dst_native_) dst_mem.set_data_handle(dst);
    else if (reorder_dst_) dst_mem.set_data_handle(scratch.dst_ptr());
    if (residual != nullptr) {
        memory& r = bound_.residual;
        r.set_data_handle(const_cast<void*>(residual));
        void* target = dst_mem.get_data_handle();
        if (residual_is_native_) {  // already in the layout the sum post-op adds to
            if (residual != target) std::memcpy(target, residual, dst_md_.get_size());
        } else if (reorder_dst_) sum_in_.execute(ctx.strm, r, dst_mem);
        else if (residual != dst) std::memcpy(dst, residual, dst_plain_.get_size());
    }
    args[DNNL_ARG_SRC] = src_mem;
    args[DNNL_ARG_DST] = dst_mem;
    size_t b = 0;
    for (size_t i = 0; i < post_.size(); ++i) {
        if (post_[i].kind != PostOp::BINARY) continue;
        if (b >= binary.size() || b >= bound_.binary.size())
            throw std::runtime_error("sol: a binary post-op's operand is missing");
        memory& operand = bound_.binary[b];
        operand.set_data_handle(const_cast<void*>(binary.begin()[b++]));
        args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(onednn_index(post_, i)) | DNNL_ARG_SRC_1] = operand;
    }
    if (pad_md_.get_size() > 0) args[DNNL_ARG_SCRATCHPAD] = memory(pad_md_, ctx.eng, scratch.pad_ptr());
    prim_.execute(ctx.strm, args);
    if (reorder_dst_ && !keep_dst_native_) dst_out_.execute(ctx.strm, dst_mem, dst_user);
    ctx.strm.wait();
}

// --- WeightedOp ---------------------------------------------------------------------------------

void detail::WeightedOp::run(const void* src, void* dst, std::initializer_list<const void*> binary,
                             const void* residual, Scratch& scratch, const void* runtime_weights) {
    std::unordered_map<int, memory> args{{DNNL_ARG_WEIGHTS, weights(runtime_weights, scratch)}};
    if (bias_) args[DNNL_ARG_BIAS] = bias_;
    execute(args, src, dst, binary, residual, scratch);
}

void detail::WeightedOp::place(const memory::desc& w_user, const void* w, const memory::desc& b_user,
                       const memory::desc& b_want, const void* bias, Scratch& scratch) {
    if (w) weights_ = place_weights(w_user, weights_md_, w);
    else runtime_weights(w_user, scratch);
    if (bias) bias_ = place_weights(b_user, b_want, bias);
}

// --- Conv ---------------------------------------------------------------------------------------

void detail::Conv::init(const Dims& src_in, const Dims& weights_in, const Dims& dst_in, const Dims& strides_in,
                const Dims& dilation_minus_one_in, const Dims& pad_l_in, const Dims& pad_r_in, long groups,
                const void* w, const void* bias, std::initializer_list<PostOp> post, Scratch& scratch,
                bool src_nhwc, bool dst_nhwc, bool blocked) {
    // oneDNN takes std::vector dims
    const memory::dims src = vec(src_in), weights = vec(weights_in), dst = vec(dst_in),
                       strides = vec(strides_in), dilation_minus_one = vec(dilation_minus_one_in),
                       pad_l = vec(pad_l_in), pad_r = vec(pad_r_in);
    auto& eng = Context::get().eng;
    post_.assign(post.begin(), post.end());
    src_plain_ = src_nhwc ? memory::desc(src, dt::f32, tag::nhwc) : plain(src);
    dst_plain_ = dst_nhwc ? memory::desc(dst, dt::f32, tag::nhwc) : plain(dst);
    memory::dims wdims = weights;
    memory::desc w_user = plain(weights);
    if (groups > 1) {  // oneDNN's grouped weights: (G, O/G, C/G, kh, kw)
        wdims = {groups, weights[0] / groups, weights[1], weights[2], weights[3]};
        w_user = memory::desc(wdims, dt::f32, tag::goihw);
    }
    memory::desc any_src(src, dt::f32, tag::any), any_dst(dst, dt::f32, tag::any);
    // Weights given at load time are reordered once into oneDNN's choice; weights that arrive
    // with every call (w == nullptr here) are reordered into it at each call (weights()).
    memory::desc any_w(wdims, dt::f32, tag::any);
    memory::desc b_md = bias ? memory::desc({dst[1]}, dt::f32, tag::a) : memory::desc();
    auto conv_pd = [&](const memory::desc& s, const memory::desc& d) {
        return dnnl::convolution_forward::primitive_desc(
            eng, dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, s, any_w, b_md, d, strides,
            dilation_minus_one, pad_l, pad_r, make_attr(post_));
    };
    auto pd = conv_pd(any_src, any_dst);
    if (blocked) {
        // A chain of convolutions the network keeps in oneDNN's 16-channel blocks (sol_x86.render:
        // blocked_convs): asked for explicitly, since with "any" oneDNN 3.2 picks its
        // channels-last brgemm kernels, which run memory-bound small-channel layers up to 1.8x
        // slower than its blocked ones on this AMD machine. A small input channel count (the
        // RGB image) keeps oneDNN's choice of input layout.
        auto want = conv_pd(src[1] >= 16 ? memory::desc(src, dt::f32, tag::nChw16c) : any_src,
                             memory::desc(dst, dt::f32, tag::nChw16c));
        if (std::string(want.impl_info_str()).rfind("ref", 0) != 0) pd = want;  // never a reference kernel
    }
    adopt<dnnl::convolution_forward>(pd, w_user, w, b_md, bias, scratch);
}

// --- Deconv -------------------------------------------------------------------------------------
// oneDNN reads PyTorch's (C, O/G, kh, kw) weight as the "iohw" (grouped: "giohw") layout of its
// (O, C, kh, kw) weight, so no copy is needed to describe it.

// --- WinogradConv -------------------------------------------------------------------------------

bool detail::WinogradConv::fits(const Dims& src, const Dims& weights, const Dims& dst, const Dims& strides,
                                const Dims& dilation_minus_one, long groups, std::initializer_list<PostOp> post) {
    if (src.n != 4 || weights.n != 4 || dst.n != 4 || groups != 1) return false;
    if (weights.v[2] != 3 || weights.v[3] != 3 || strides.v[0] != 1 || strides.v[1] != 1) return false;
    if (dilation_minus_one.v[0] != 0 || dilation_minus_one.v[1] != 0) return false;
    if (src.v[1] % winograd::kBlock || dst.v[1] % winograd::kBlock) return false;
    // bias (apart), then optionally the residual sum, then optionally relu: nothing else
    int stage = 0;
    for (const PostOp& p : post) {
        if (p.kind == PostOp::SUM && stage == 0) stage = 1;
        else if (p.kind == PostOp::ELTWISE && p.alg == dnnl_eltwise_relu && p.alpha == 0.f && stage < 2) stage = 2;
        else return false;
    }
    return true;
}

void detail::WinogradConv::init(const Dims& src_in, const Dims& weights_in, const Dims& dst_in, const Dims& pad_l,
                                const void* w, const void* bias, std::initializer_list<PostOp> post,
                                Scratch& scratch, bool src_nhwc, bool dst_nhwc) {
    if (!w) throw std::runtime_error("sol: a Winograd convolution needs its weights at load time");
    const memory::dims src = vec(src_in), dst = vec(dst_in);
    auto& ctx = Context::get();
    // Channels-last tensors are read and written as they are; NCHW ones in nChw16c, the layout
    // oneDNN's direct convolutions keep between them.
    const winograd::Layout in = src_nhwc ? winograd::Layout::nhwc(src[1], src[2], src[3])
                                         : winograd::Layout::nChw16c(src[1], src[2], src[3]);
    const winograd::Layout out = dst_nhwc ? winograd::Layout::nhwc(dst[1], dst[2], dst[3])
                                          : winograd::Layout::nChw16c(dst[1], dst[2], dst[3]);
    shape_ = {src[0], src[1], dst[1], src[2], src[3], dst[2], dst[3], pad_l.v[0], pad_l.v[1], in, out};
    post_.assign(post.begin(), post.end());
    for (const PostOp& p : post_) relu_ = relu_ || p.kind == PostOp::ELTWISE;
    src_plain_ = src_nhwc ? memory::desc(src, dt::f32, tag::nhwc) : plain(src);
    dst_plain_ = dst_nhwc ? memory::desc(dst, dt::f32, tag::nhwc) : plain(dst);
    src_md_ = src_nhwc ? src_plain_ : memory::desc(src, dt::f32, tag::nChw16c);
    dst_md_ = dst_nhwc ? dst_plain_ : memory::desc(dst, dt::f32, tag::nChw16c);
    bias_values_.assign(shape_.k, 0.f);
    if (bias) std::memcpy(bias_values_.data(), bias, sizeof(float) * shape_.k);

    // A chunk's V and M within about a quarter of a core's L2, and at least two chunks per
    // thread where the tiles allow (measured on ResNet's layers: see sol_x86_winograd.hpp).
    threads_ = std::max(1, omp_get_max_threads());
    const long tiles = shape_.tiles(), per_tile = winograd::kPositions * long(sizeof(float)) * (shape_.c + shape_.k);
    rows_ = std::max(8L, std::min({128L, (512L << 10) / per_tile, (tiles + 2 * threads_ - 1) / (2 * threads_)}));
    chunks_ = (tiles + rows_ - 1) / rows_;

    v_md_ = memory::desc({winograd::kPositions, rows_, shape_.c}, dt::f32, tag::abc);
    m_md_ = memory::desc({winograd::kPositions, rows_, shape_.k}, dt::f32, tag::abc);
    memory::desc u_any({winograd::kPositions, shape_.c, shape_.k}, dt::f32, tag::any);
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    auto pd = dnnl::matmul::primitive_desc(ctx.eng, v_md_, u_any, m_md_, attr);
    impl_ = std::string("winograd F(2x2,3x3), matmul ") + pd.impl_info_str();
    product_pad_md_ = pd.scratchpad_desc();
    std::vector<float> u(size_t(winograd::kPositions) * shape_.c * shape_.k);
    winograd::transform_weights(shape_, static_cast<const float*>(w), u.data());
    memory::desc u_plain({winograd::kPositions, shape_.c, shape_.k}, dt::f32, tag::abc);
    u_ = place_weights(u_plain, pd.weights_desc(), u.data());
    product_ = dnnl::matmul(pd);

    auto up = [](size_t b) { return (b + 63) & ~size_t(63); };
    m_at_ = up(v_md_.get_size());
    pad_at_ = m_at_ + up(m_md_.get_size());
    slice_ = pad_at_ + up(product_pad_md_.get_size());
    scratch.need_tiles(slice_ * threads_);
    prepare_reorders(scratch);
}

void detail::WinogradConv::run(const void* src, void* dst, std::initializer_list<const void*>,
                               const void* residual, Scratch& scratch, const void*) {
    auto& ctx = Context::get();
    if (!bound_.ready) bind_memories();
    char* base = static_cast<char*>(scratch.tiles_ptr());
    if (lanes_at_ != base) {  // the slices, bound once (Scratch is allocated after every init)
        lanes_.clear();
        for (int i = 0; i < threads_; ++i) {
            char* slice = base + size_t(i) * slice_;
            lanes_.push_back({dnnl::stream(ctx.eng), memory(v_md_, ctx.eng, slice),
                              memory(m_md_, ctx.eng, slice + m_at_), memory(product_pad_md_, ctx.eng, slice + pad_at_)});
        }
        lanes_at_ = base;
    }
    memory &src_user = bound_.src_user, &dst_user = bound_.dst_user, &dst_mem = bound_.dst;
    src_user.set_data_handle(const_cast<void*>(src));
    dst_user.set_data_handle(dst);
    const float* x = static_cast<const float*>(src);
    if (!src_is_native_ && reorder_src_) {
        bound_.src.set_data_handle(scratch.src_ptr());
        src_in_.execute(ctx.strm, src_user, bound_.src);
        ctx.strm.wait();
        x = static_cast<const float*>(scratch.src_ptr());
    }
    float* y = static_cast<float*>(keep_dst_native_ || !reorder_dst_ ? dst : scratch.dst_ptr());
    dst_mem.set_data_handle(y);
    const float* add = nullptr;
    if (residual != nullptr) {
        if (residual_is_native_ || !reorder_dst_) {
            add = static_cast<const float*>(residual);
        } else {  // the plain residual, in the output's layout first; the output adds it in place
            bound_.residual.set_data_handle(const_cast<void*>(residual));
            sum_in_.execute(ctx.strm, bound_.residual, dst_mem);
            ctx.strm.wait();
            add = y;
        }
    }
    const int threads = std::min(threads_, std::max(1, omp_get_max_threads()));
    std::string failure;
    std::mutex failure_lock;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long chunk = 0; chunk < chunks_; ++chunk) {
        Lane& lane = lanes_[omp_get_thread_num()];
        const long first = chunk * rows_, last = std::min(shape_.tiles(), first + rows_);
        float* v = static_cast<float*>(lane.v.get_data_handle());
        float* m = static_cast<float*>(lane.m.get_data_handle());
        winograd::transform_input(shape_, x, first, last, v, rows_);
        try {  // nothing may leave an OpenMP region: the first failure is rethrown below
            product_.execute(lane.stream, {{DNNL_ARG_SRC, lane.v}, {DNNL_ARG_WEIGHTS, u_}, {DNNL_ARG_DST, lane.m},
                                           {DNNL_ARG_SCRATCHPAD, lane.pad}});
            lane.stream.wait();
        } catch (const std::exception& e) {
            // a mutex, not a named OpenMP critical: that would be a global symbol of a deployed libNAME.a
            std::lock_guard<std::mutex> hold(failure_lock);
            if (failure.empty()) failure = e.what();
            continue;
        }
        winograd::transform_output(shape_, m, first, last, rows_, bias_values_.data(), add, relu_, y);
    }
    if (!failure.empty()) throw std::runtime_error("sol: Winograd convolution: " + failure);
    if (reorder_dst_ && !keep_dst_native_) {
        dst_out_.execute(ctx.strm, dst_mem, dst_user);
        ctx.strm.wait();
    }
}

void detail::Deconv::init(const Dims& src_in, const Dims& weights_in, const Dims& dst_in, const Dims& strides_in,
                  const Dims& dilation_minus_one_in, const Dims& pad_l_in, const Dims& pad_r_in, long groups,
                  const void* w, const void* bias, std::initializer_list<PostOp> post, Scratch& scratch) {
    // oneDNN takes std::vector dims
    const memory::dims src = vec(src_in), weights = vec(weights_in), dst = vec(dst_in),
                       strides = vec(strides_in), dilation_minus_one = vec(dilation_minus_one_in),
                       pad_l = vec(pad_l_in), pad_r = vec(pad_r_in);
    auto& eng = Context::get().eng;
    post_.assign(post.begin(), post.end());
    src_plain_ = plain(src);
    dst_plain_ = plain(dst);
    memory::dims wdims = {dst[1], src[1], weights[2], weights[3]};
    memory::desc w_user(wdims, dt::f32, tag::iohw);
    if (groups > 1) {  // (G, O/G, C/G, kh, kw), stored as PyTorch's (G * C/G, O/G, kh, kw)
        wdims = {groups, dst[1] / groups, src[1] / groups, weights[2], weights[3]};
        w_user = memory::desc(wdims, dt::f32, tag::giohw);
    }
    memory::desc any_src(src, dt::f32, tag::any), any_dst(dst, dt::f32, tag::any);
    memory::desc any_w(wdims, dt::f32, tag::any);
    memory::desc b_md = bias ? memory::desc({dst[1]}, dt::f32, tag::a) : memory::desc();
    auto pd = dnnl::deconvolution_forward::primitive_desc(
        eng, dnnl::prop_kind::forward_inference, dnnl::algorithm::deconvolution_direct, any_src, any_w, b_md,
        any_dst, strides, dilation_minus_one, pad_l, pad_r, make_attr(post_));
    adopt<dnnl::deconvolution_forward>(pd, w_user, w, b_md, bias, scratch);
}

// --- GemvDense ----------------------------------------------------------------------------------

bool detail::GemvDense::fits(long rows, const void* w, std::initializer_list<PostOp> post) {
    if (rows != 1 || !w || post.size() > 1) return false;
    for (const PostOp& p : post)
        if (p.kind != PostOp::ELTWISE || p.alg != dnnl_eltwise_relu || p.alpha != 0.f) return false;
    return true;
}

void detail::GemvDense::init(long in, long out, const void* w, const void* bias, std::initializer_list<PostOp> post) {
    in_ = in;
    out_ = out;
    relu_ = post.size() == 1;
    const float* wf = static_cast<const float*>(w);
    w_.assign(wf, wf + in * out);
    if (bias) b_.assign(static_cast<const float*>(bias), static_cast<const float*>(bias) + out);
    src_plain_ = plain({1, in});
    dst_plain_ = plain({1, out});
    src_md_ = src_plain_;
    dst_md_ = dst_plain_;
    impl_ = "gemv (sol_x86_gemv.hpp)";
}

void detail::GemvDense::run(const void* src, void* dst, std::initializer_list<const void*>, const void*, Scratch&,
                            const void*) {
    const float* x = static_cast<const float*>(src);
    float* y = static_cast<float*>(dst);
    const float* b = b_.empty() ? nullptr : b_.data();
    const int threads = omp_get_max_threads();
    // whole groups of four rows per thread; a layer of fewer than 64 rows per thread runs on one
    const long per = out_ / 64 >= threads ? (out_ / 4 + threads - 1) / threads * 4 : out_;
#pragma omp parallel num_threads(int((out_ + per - 1) / per))
    {
        const long first = std::min(out_, long(omp_get_thread_num()) * per);
        const long last = std::min(out_, first + per);
        gemv::rows(w_.data(), x, b, y, in_, first, last, relu_);
    }
}

// --- Dense --------------------------------------------------------------------------------------

void detail::Dense::init(long rows, long in, long out, const void* w, const void* bias,
                         std::initializer_list<PostOp> post, Scratch& scratch) {
    auto& eng = Context::get().eng;
    post_.assign(post.begin(), post.end());
    src_plain_ = plain({rows, in});
    dst_plain_ = plain({rows, out});
    memory::desc w_user({in, out}, dt::f32, tag::ba);  // (out, in) row-major, seen as (in, out)
    memory::desc any_w({in, out}, dt::f32, tag::any);
    memory::desc b_md = bias ? plain({1, out}) : memory::desc();
    auto pd = dnnl::matmul::primitive_desc(eng, src_plain_, any_w, b_md, dst_plain_, make_attr(post_));
    adopt<dnnl::matmul>(pd, w_user, w, b_md, bias, scratch);
}

// --- MatMul -------------------------------------------------------------------------------------

void detail::MatMul::init(const Dims& a_in, const Dims& b_in, const Dims& dst_in, std::initializer_list<PostOp> post,
                  Scratch& scratch) {
    // oneDNN takes std::vector dims
    const memory::dims a = vec(a_in), b = vec(b_in), dst = vec(dst_in);
    auto& eng = Context::get().eng;
    post_.assign(post.begin(), post.end());
    src_plain_ = plain(a);
    dst_plain_ = plain(dst);
    b_md_ = plain(b);
    auto pd = dnnl::matmul::primitive_desc(eng, src_plain_, b_md_, dst_plain_, make_attr(post_));
    impl_ = pd.impl_info_str();
    src_md_ = pd.src_desc();
    dst_md_ = pd.dst_desc();
    prim_ = dnnl::matmul(pd);
    prepare_reorders(scratch);
    scratch.need_pad((pad_md_ = pd.scratchpad_desc()).get_size());
}

void detail::MatMul::run(const void* a, const void* b, void* dst, std::initializer_list<const void*> binary,
                 const void* residual, Scratch& scratch) {
    std::unordered_map<int, memory> args{
        {DNNL_ARG_WEIGHTS, memory(b_md_, Context::get().eng, const_cast<void*>(b))}};
    execute(args, a, dst, binary, residual, scratch);
}

// --- ConvBackward -------------------------------------------------------------------------------
// Each primitive is described with a forward-training hint as oneDNN requires. All tensors arrive
// at run time (saved activations, output gradients, the current weights) in sol's plain NCHW /
// OIHW layout; the primitive is created with format "any" and each operand is reordered into the
// layout oneDNN chose (and the result back) only where the two differ: blocked layouts make the
// backward kernels several times faster than plain NCHW, which outweighs the reorders. An input
// that an earlier backward op of the same call converted already (the output gradient, read by
// backward-data and backward-weights) is read from that op's copy (share_input). Measured on
// ResNet-50 (batch 8, 1 thread): plain NCHW for 1x1 convolutions (oneDNN's gemm:jit, no
// reorders) or plain diff_weights (gemm for all) cost more in the primitive than they save.

void detail::ConvBackward::init(bool data, const Dims& src_in, const Dims& weights_in, const Dims& dst_in,
                        const Dims& strides_in, const Dims& dilation_minus_one_in, const Dims& pad_l_in,
                        const Dims& pad_r_in, long groups) {
    // oneDNN takes std::vector dims
    const memory::dims src = vec(src_in), weights = vec(weights_in), dst = vec(dst_in),
                       strides = vec(strides_in), dilation_minus_one = vec(dilation_minus_one_in),
                       pad_l = vec(pad_l_in), pad_r = vec(pad_r_in);
    auto& eng = Context::get().eng;
    data_ = data;
    memory::desc x_md = plain(src), y_md = plain(dst), w_md = plain(weights);
    memory::dims wdims = weights;
    if (groups > 1) {  // oneDNN's grouped weights: (G, O/G, C/G, kh, kw), the same bytes
        wdims = {groups, weights[0] / groups, weights[1], weights[2], weights[3]};
        w_md = memory::desc(wdims, dt::f32, tag::goihw);
    }
    memory::desc x_any(src, dt::f32, tag::any), y_any(dst, dt::f32, tag::any), w_any(wdims, dt::f32, tag::any);
    auto hint = dnnl::convolution_forward::primitive_desc(
        eng, dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, x_any, w_any, y_any,
        strides, dilation_minus_one, pad_l, pad_r);
    dnnl::primitive_attr user_pad;  // see make_attr: a scratchpad not tied to this thread
    user_pad.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (data) {
        auto pd = dnnl::convolution_backward_data::primitive_desc(
            eng, dnnl::algorithm::convolution_direct, x_any, w_any, y_any, strides, dilation_minus_one, pad_l,
            pad_r, hint, user_pad);
        impl_ = pd.impl_info_str();
        own_pad(pd.scratchpad_desc());
        prim_ = dnnl::convolution_backward_data(pd);
        a_.init(y_md, pd.diff_dst_desc(), true);
        b_.init(w_md, pd.weights_desc(), true);
        out_.init(x_md, pd.diff_src_desc(), false);
    } else {
        auto pd = dnnl::convolution_backward_weights::primitive_desc(
            eng, dnnl::algorithm::convolution_direct, x_any, w_any, y_any, strides, dilation_minus_one, pad_l,
            pad_r, hint, user_pad);
        impl_ = pd.impl_info_str();
        own_pad(pd.scratchpad_desc());
        prim_ = dnnl::convolution_backward_weights(pd);
        a_.init(x_md, pd.src_desc(), true);
        b_.init(y_md, pd.diff_dst_desc(), true);
        out_.init(w_md, pd.diff_weights_desc(), false);
    }
    reorder_src_ = a_.convert || b_.convert;
    reorder_dst_ = out_.convert;
}

void detail::ConvBackward::run(const void* a, const void* b, void* out) {
    auto& ctx = Context::get();
    std::unordered_map<int, memory> args;
    memory ma = a_.in(a), mb = b_.in(b), mo = out_.target(out);
    if (data_) {
        args = {{DNNL_ARG_DIFF_DST, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DIFF_SRC, mo}};
    } else {
        args = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_DIFF_DST, mb}, {DNNL_ARG_DIFF_WEIGHTS, mo}};
    }
    if (pad_md_.get_size() > 0) args[DNNL_ARG_SCRATCHPAD] = memory(pad_md_, ctx.eng, Scratch::align(pad_.data()));
    prim_.execute(ctx.strm, args);
    out_.out(mo, out);
    ctx.strm.wait();
}

bool detail::ConvBackward::share_input(int mine, ConvBackward& owner, int theirs) {
    Operand &me = input(mine), &them = owner.input(theirs);
    if (&owner == this || !me.convert || !them.convert || me.user != them.user || me.want != them.want ||
        me.lender != nullptr)
        return false;
    me.lender = &them;
    ++them.borrowers;
    return true;
}

std::string detail::ConvBackward::describe() const {
    auto side = [](const char* name, const Operand& o) {
        return std::string(name) + (o.lender ? " shared" : o.convert ? " reordered" : " plain");
    };
    return impl_ + (data_ ? " (backward data: " + side("diff_dst", a_) + ", " + side("weights", b_) + ", " +
                                side("diff_src", out_) + ")"
                          : " (backward weights: " + side("src", a_) + ", " + side("diff_dst", b_) + ", " +
                                side("diff_weights", out_) + ")");
}

void detail::ConvBackward::own_pad(const memory::desc& md) {
    pad_md_ = md;
    pad_.resize(md.get_size() + 64);
}

void detail::ConvBackward::Operand::init(const memory::desc& u, const memory::desc& w, bool input) {
    auto& eng = Context::get().eng;
    user = u;
    want = w;
    convert = u != w;
    if (!convert) return;
    step = input ? dnnl::reorder(memory(u, eng, nullptr), memory(w, eng, nullptr))
                 : dnnl::reorder(memory(w, eng, nullptr), memory(u, eng, nullptr));
}

void* detail::ConvBackward::Operand::data() {
    // Allocated at the first conversion: an input that always borrows its copy needs none.
    if (buffer.empty()) buffer.resize(want.get_size() + 64);
    return Scratch::align(buffer.data());
}

memory detail::ConvBackward::Operand::in(const void* p) {
    auto& ctx = Context::get();
    memory m(user, ctx.eng, const_cast<void*>(p));
    if (!convert) return m;
    if (lender != nullptr && lender->from == p && lender->readers_left > 0) {
        if (--lender->readers_left == 0) lender->from = nullptr;  // the last reader of that copy
        return memory(want, ctx.eng, lender->data());
    }
    memory t(want, ctx.eng, data());
    step.execute(ctx.strm, m, t);
    from = borrowers > 0 ? p : nullptr;
    readers_left = borrowers;
    return t;
}

memory detail::ConvBackward::Operand::target(void* p) {
    auto& ctx = Context::get();
    return convert ? memory(want, ctx.eng, data()) : memory(user, ctx.eng, p);
}

void detail::ConvBackward::Operand::out(memory& m, void* p) {
    if (!convert) return;
    memory u(user, Context::get().eng, p);
    step.execute(Context::get().strm, m, u);
}


// --- this machine's ceilings (sol_x86.ceilings) -------------------------------------------------
// Measured with the primitives the networks themselves run, so that a roofline's "fraction of the
// roof" is set against what oneDNN reaches on this CPU, not against a weaker reference.
template <class Step> static double best_seconds(int reps, Step step) {
    using clock = std::chrono::steady_clock;
    step();  // warm-up: thread pool, page faults, the kernel's own caches
    double best = 1e300;
    for (int i = 0; i < reps; ++i) {
        auto t0 = clock::now();
        step();
        best = std::min(best, std::chrono::duration<double>(clock::now() - t0).count());
    }
    return best;
}

extern "C" double sol_x86_matmul_rate(long m, long k, long n, int reps) {
    // dst(m, n) = src(m, k) @ weights(k, n), fp32, weights in the layout oneDNN prefers ("any", as a
    // dense layer's are): the rate its best GEMM kernel reaches for this shape, in FLOP/s.
    try {
        auto& ctx = Context::get();
        memory::desc want_w({k, n}, dt::f32, tag::any);
        auto pd = dnnl::matmul::primitive_desc(ctx.eng, plain({m, k}), want_w, plain({m, n}));
        memory src(pd.src_desc(), ctx.eng), wei(pd.weights_desc(), ctx.eng), dst(pd.dst_desc(), ctx.eng);
        for (memory* mem : {&src, &wei}) {
            auto* p = static_cast<float*>(mem->get_data_handle());
            size_t count = mem->get_desc().get_size() / sizeof(float);
            for (size_t i = 0; i < count; ++i) p[i] = static_cast<float>(i % 7) * 0.25f - 0.5f;
        }
        dnnl::matmul mm(pd);
        double s = best_seconds(reps, [&] {
            mm.execute(ctx.strm, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
            ctx.strm.wait();
        });
        return 2.0 * m * k * n / s;
    } catch (const std::exception&) {
        return -1.0;
    }
}

extern "C" double sol_x86_triad_rate(long elems, int reps) {
    // c = a + b over arrays far beyond the caches, with oneDNN's binary primitive on its threads:
    // two arrays read, one written (STREAM's count, write-allocate traffic not counted), bytes/s.
    try {
        auto& ctx = Context::get();
        memory::desc md = plain({elems});
        memory a(md, ctx.eng), b(md, ctx.eng), c(md, ctx.eng);
        for (memory* mem : {&a, &b, &c}) std::memset(mem->get_data_handle(), 0, md.get_size());
        dnnl::binary add(dnnl::binary::primitive_desc(ctx.eng, dnnl::algorithm::binary_add, md, md, md));
        double s = best_seconds(reps, [&] {
            add.execute(ctx.strm, {{DNNL_ARG_SRC_0, a}, {DNNL_ARG_SRC_1, b}, {DNNL_ARG_DST, c}});
            ctx.strm.wait();
        });
        return 3.0 * static_cast<double>(md.get_size()) / s;
    } catch (const std::exception&) {
        return -1.0;
    }
}

// --- the handles the network holds ----------------------------------------------------------------
LibraryOp::LibraryOp(detail::LibraryOp* impl) : impl_(impl) {}
LibraryOp::~LibraryOp() { delete impl_; }

bool LibraryOp::keep_native(std::initializer_list<Reader> readers, size_t buffer_bytes) {
    std::vector<detail::LibraryOp::Reader> mine;
    for (const Reader& r : readers) mine.push_back({r.role, r.op->impl_});
    return impl_->keep_native(mine, buffer_bytes);
}

std::string LibraryOp::describe() const { return impl_->describe(); }

void LibraryOp::describe_to(std::string& out, const char* label) const {
    out += label;
    out += ": ";
    out += impl_->describe();
    out += '\n';
}

template <class T> static T& self(detail::LibraryOp* impl) { return *static_cast<T*>(impl); }

void WeightedOp::run(const void* src, void* dst, std::initializer_list<const void*> binary, const void* residual,
                     Scratch& scratch, const void* runtime_weights) {
    self<detail::WeightedOp>(impl_).run(src, dst, binary, residual, scratch, runtime_weights);
}

Conv::Conv() : WeightedOp(new detail::Conv) {}
void Conv::init(const Dims& src, const Dims& weights, const Dims& dst, const Dims& strides,
                const Dims& dilation_minus_one, const Dims& pad_l, const Dims& pad_r, long groups,
                const void* w, const void* bias, std::initializer_list<PostOp> post, Scratch& scratch,
                bool src_nhwc, bool dst_nhwc, bool winograd, bool blocked) {
    if (winograd && w && detail::WinogradConv::fits(src, weights, dst, strides, dilation_minus_one, groups, post)) {
        auto* op = new detail::WinogradConv;
        delete impl_;
        impl_ = op;
        op->init(src, weights, dst, pad_l, w, bias, post, scratch, src_nhwc, dst_nhwc);
        return;
    }
    self<detail::Conv>(impl_).init(src, weights, dst, strides, dilation_minus_one, pad_l, pad_r, groups, w, bias,
                                   post, scratch, src_nhwc, dst_nhwc, blocked);
}

Deconv::Deconv() : WeightedOp(new detail::Deconv) {}
void Deconv::init(const Dims& src, const Dims& weights, const Dims& dst, const Dims& strides,
                  const Dims& dilation_minus_one, const Dims& pad_l, const Dims& pad_r, long groups,
                  const void* w, const void* bias, std::initializer_list<PostOp> post, Scratch& scratch) {
    self<detail::Deconv>(impl_).init(src, weights, dst, strides, dilation_minus_one, pad_l, pad_r, groups, w, bias,
                                     post, scratch);
}

Dense::Dense() : WeightedOp(new detail::Dense) {}
void Dense::init(long rows, long in, long out, const void* w, const void* bias, std::initializer_list<PostOp> post,
                 Scratch& scratch) {
    if (detail::GemvDense::fits(rows, w, post)) {
        auto* op = new detail::GemvDense;
        delete impl_;
        impl_ = op;
        op->init(in, out, w, bias, post);
        return;
    }
    self<detail::Dense>(impl_).init(rows, in, out, w, bias, post, scratch);
}

MatMul::MatMul() : LibraryOp(new detail::MatMul) {}
void MatMul::init(const Dims& a, const Dims& b, const Dims& dst, std::initializer_list<PostOp> post,
                  Scratch& scratch) {
    self<detail::MatMul>(impl_).init(a, b, dst, post, scratch);
}
void MatMul::run(const void* a, const void* b, void* dst, std::initializer_list<const void*> binary,
                 const void* residual, Scratch& scratch) {
    self<detail::MatMul>(impl_).run(a, b, dst, binary, residual, scratch);
}

ConvBackward::ConvBackward() : LibraryOp(new detail::ConvBackward) {}
void ConvBackward::init(bool data, const Dims& src, const Dims& weights, const Dims& dst, const Dims& strides,
                        const Dims& dilation_minus_one, const Dims& pad_l, const Dims& pad_r, long groups) {
    self<detail::ConvBackward>(impl_).init(data, src, weights, dst, strides, dilation_minus_one, pad_l, pad_r,
                                           groups);
}
void ConvBackward::run(const void* a, const void* b, void* out) { self<detail::ConvBackward>(impl_).run(a, b, out); }
bool ConvBackward::share_input(int mine, ConvBackward& owner, int theirs) {
    return self<detail::ConvBackward>(impl_).share_input(mine, self<detail::ConvBackward>(owner.impl_), theirs);
}

}  // namespace sol
