// sol x86 runtime: oneDNN primitives for the library groups of a generated network.
//
// Each op is created once (sol_create): primitive descriptors chosen with format "any" so that
// oneDNN picks its fastest (blocked or channels-last) layout, weights reordered into that layout
// once, epilogues attached as post-ops. At run time an op reorders its plain (row-major, NCHW)
// input into the chosen layout only when the two differ, executes, and reorders back.
#pragma once
#include <oneapi/dnnl/dnnl.hpp>

#include <cstring>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace sol {

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

// One post-op of a library group's epilogue, in order.
struct PostOp {
    enum Kind { ELTWISE, BINARY, SUM } kind;
    dnnl::algorithm alg = dnnl::algorithm::undef;
    float alpha = 0.f, beta = 0.f;
    // BINARY: the operand's dims as seen by oneDNN (broadcast dims are 1).
    memory::dims dims;
};

inline PostOp eltwise(dnnl::algorithm alg, float alpha = 0.f, float beta = 0.f) {
    PostOp p{PostOp::ELTWISE};
    p.alg = alg; p.alpha = alpha; p.beta = beta;
    return p;
}
inline PostOp binary(dnnl::algorithm alg, memory::dims dims) {
    PostOp p{PostOp::BINARY};
    p.alg = alg; p.dims = std::move(dims);
    return p;
}
inline PostOp sum() { return PostOp{PostOp::SUM}; }

inline tag plain_tag(size_t rank) {
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
inline memory::desc plain(const memory::dims& d) { return memory::desc(d, dt::f32, plain_tag(d.size())); }

// Process-wide engine and stream: creating them is not free and one CPU engine serves all.
struct Context {
    dnnl::engine eng{dnnl::engine::kind::cpu, 0};
    dnnl::stream strm{eng};
    static Context& get() {
        static Context ctx;
        return ctx;
    }
};

// Scratch memory shared by every op of one network: ops run one after another, so two buffers
// (converted input, converted output) of the largest size needed are enough.
struct Scratch {
    size_t src_bytes = 0, dst_bytes = 0;
    std::vector<char> src, dst;
    void need(size_t s, size_t d) {
        src_bytes = std::max(src_bytes, s);
        dst_bytes = std::max(dst_bytes, d);
    }
    void allocate() {
        src.resize(src_bytes + 64);
        dst.resize(dst_bytes + 64);
    }
    void* src_ptr() { return align(src.data()); }
    void* dst_ptr() { return align(dst.data()); }
    static void* align(char* p) { return reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t(63)); }
};

inline dnnl::primitive_attr make_attr(const std::vector<PostOp>& ops) {
    dnnl::post_ops po;
    for (const PostOp& p : ops) {
        if (p.kind == PostOp::ELTWISE) po.append_eltwise(p.alg, p.alpha, p.beta);
        else if (p.kind == PostOp::SUM) po.append_sum(1.f);
        else po.append_binary(p.alg, plain(p.dims));
    }
    dnnl::primitive_attr attr;
    attr.set_post_ops(po);
    return attr;
}

// A library op: the primitive plus the reorders around it.
class LibraryOp {
  public:
    virtual ~LibraryOp() = default;

    // Layout propagation: when this op's result feeds only ``next`` and both chose the same
    // internal layout, the tensor stays in that layout in between (no reorder out and back in).
    // Checked here, at load time, because only oneDNN knows the layouts it picked.
    void link_to(LibraryOp& next, size_t buffer_bytes) {
        if (reorder_dst_ && next.reorder_src_ && dst_md_ == next.src_md_ && dst_md_.get_size() <= buffer_bytes) {
            keep_dst_native_ = true;
            next.src_is_native_ = true;
        }
    }

    // What runs, for reports: the implementation oneDNN chose and where layouts are converted.
    std::string describe() const {
        auto side = [](bool reorder, bool native) { return native ? "kept" : reorder ? "reordered" : "plain"; };
        return impl_ + " (input " + side(reorder_src_, src_is_native_) + ", output " +
               side(reorder_dst_, keep_dst_native_) + ")";
    }

  protected:
    std::string impl_;
    dnnl::primitive prim_;
    memory::desc src_plain_, dst_plain_, src_md_, dst_md_;
    memory weights_, bias_;
    memory::desc weights_md_;

    memory weights(const void* runtime) const {
        return runtime ? memory(weights_md_, Context::get().eng, const_cast<void*>(runtime)) : weights_;
    }
    std::vector<PostOp> post_;
    bool reorder_src_ = false, reorder_dst_ = false;
    bool keep_dst_native_ = false, src_is_native_ = false;
    dnnl::reorder src_in_, dst_out_, sum_in_;

    void prepare_reorders(Scratch& scratch) {
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

    memory place_weights(const memory::desc& user, const memory::desc& want, const void* data) {
        auto& ctx = Context::get();
        memory src(user, ctx.eng, const_cast<void*>(data));
        memory dst(want, ctx.eng);  // owned: the weights live in the op from now on
        dnnl::reorder(src, dst).execute(ctx.strm, src, dst);
        ctx.strm.wait();
        return dst;
    }

    // Run with plain input/output pointers. ``binary`` holds one pointer per BINARY post-op,
    // ``residual`` the SUM operand (or nullptr).
    void execute(std::unordered_map<int, memory>& args, const void* src, void* dst,
                 const std::vector<const void*>& binary, const void* residual, Scratch& scratch) {
        auto& ctx = Context::get();
        memory src_user(src_plain_, ctx.eng, const_cast<void*>(src));
        memory dst_user(dst_plain_, ctx.eng, dst);
        memory src_mem = src_user, dst_mem = dst_user;
        if (src_is_native_) {
            src_mem = memory(src_md_, ctx.eng, const_cast<void*>(src));
        } else if (reorder_src_) {
            src_mem = memory(src_md_, ctx.eng, scratch.src_ptr());
            src_in_.execute(ctx.strm, src_user, src_mem);
        }
        if (keep_dst_native_) dst_mem = memory(dst_md_, ctx.eng, dst);
        else if (reorder_dst_) dst_mem = memory(dst_md_, ctx.eng, scratch.dst_ptr());
        if (residual != nullptr) {
            memory r(dst_plain_, ctx.eng, const_cast<void*>(residual));
            if (reorder_dst_) sum_in_.execute(ctx.strm, r, dst_mem);
            else if (residual != dst) std::memcpy(dst, residual, dst_plain_.get_size());
        }
        args[DNNL_ARG_SRC] = src_mem;
        args[DNNL_ARG_DST] = dst_mem;
        size_t b = 0;
        for (size_t i = 0; i < post_.size(); ++i) {
            if (post_[i].kind != PostOp::BINARY) continue;
            args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(int(i)) | DNNL_ARG_SRC_1] =
                memory(plain(post_[i].dims), ctx.eng, const_cast<void*>(binary.at(b++)));
        }
        prim_.execute(ctx.strm, args);
        if (reorder_dst_ && !keep_dst_native_) dst_out_.execute(ctx.strm, dst_mem, dst_user);
        ctx.strm.wait();
    }
};

// A library op with weights (and optionally a bias) of its own: convolution and dense.
class WeightedOp : public LibraryOp {
  public:
    void run(const void* src, void* dst, const std::vector<const void*>& binary, const void* residual,
             Scratch& scratch, const void* runtime_weights = nullptr) {
        std::unordered_map<int, memory> args{{DNNL_ARG_WEIGHTS, weights(runtime_weights)}};
        if (bias_) args[DNNL_ARG_BIAS] = bias_;
        execute(args, src, dst, binary, residual, scratch);
    }

  protected:
    // Weights and bias given at load time are copied into the layouts the primitive wants.
    void place(const memory::desc& w_user, const void* w, const memory::desc& b_user, const memory::desc& b_want,
               const void* bias) {
        if (w) weights_ = place_weights(w_user, weights_md_, w);
        if (bias) bias_ = place_weights(b_user, b_want, bias);
    }
};

// 2-D convolution, NCHW at the interface; groups and asymmetric padding supported.
class Conv : public WeightedOp {
  public:
    void init(memory::dims src, memory::dims weights, memory::dims dst, memory::dims strides,
              memory::dims dilation_minus_one, memory::dims pad_l, memory::dims pad_r, long groups,
              const void* w, const void* bias, std::vector<PostOp> post, Scratch& scratch) {
        auto& eng = Context::get().eng;
        post_ = std::move(post);
        src_plain_ = plain(src);
        dst_plain_ = plain(dst);
        memory::dims wdims = weights;
        memory::desc w_user = plain(weights);
        if (groups > 1) {  // oneDNN's grouped weights: (G, O/G, C/G, kh, kw)
            wdims = {groups, weights[0] / groups, weights[1], weights[2], weights[3]};
            w_user = memory::desc(wdims, dt::f32, tag::goihw);
        }
        memory::desc any_src(src, dt::f32, tag::any), any_dst(dst, dt::f32, tag::any);
        // Weights given at load time are reordered once into oneDNN's choice; weights that arrive
        // with every call (w == nullptr here) are read in their plain layout.
        memory::desc any_w = w ? memory::desc(wdims, dt::f32, tag::any) : w_user;
        memory::desc b_md = bias ? memory::desc({dst[1]}, dt::f32, tag::a) : memory::desc();
        auto pd = dnnl::convolution_forward::primitive_desc(
            eng, dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, any_src, any_w, b_md,
            any_dst, strides, dilation_minus_one, pad_l, pad_r, make_attr(post_));
        impl_ = pd.impl_info_str();
        src_md_ = pd.src_desc();
        dst_md_ = pd.dst_desc();
        weights_md_ = pd.weights_desc();
        place(w_user, w, b_md, pd.bias_desc(), bias);
        prim_ = dnnl::convolution_forward(pd);
        prepare_reorders(scratch);
    }

};

// y = x @ W^T (+ bias): a dense / linear layer with static weights of shape (out, in). The batch
// dimensions of x are folded into the rows.
class Dense : public WeightedOp {
  public:
    void init(long rows, long in, long out, const void* w, const void* bias, std::vector<PostOp> post,
              Scratch& scratch) {
        auto& eng = Context::get().eng;
        post_ = std::move(post);
        src_plain_ = plain({rows, in});
        dst_plain_ = plain({rows, out});
        memory::desc w_user({in, out}, dt::f32, tag::ba);  // (out, in) row-major, seen as (in, out)
        memory::desc any_w = w ? memory::desc({in, out}, dt::f32, tag::any) : w_user;
        memory::desc b_md = bias ? plain({1, out}) : memory::desc();
        auto pd = dnnl::matmul::primitive_desc(eng, src_plain_, any_w, b_md, dst_plain_, make_attr(post_));
        impl_ = pd.impl_info_str();
        src_md_ = pd.src_desc();
        dst_md_ = pd.dst_desc();
        weights_md_ = pd.weights_desc();
        place(w_user, w, b_md, pd.bias_desc(), bias);
        prim_ = dnnl::matmul(pd);
        prepare_reorders(scratch);
    }

};

// Batched matrix product of two run-time tensors, NumPy broadcasting over the batch dims (the
// shapes arrive padded to one rank).
class MatMul : public LibraryOp {
  public:
    void init(memory::dims a, memory::dims b, memory::dims dst, std::vector<PostOp> post, Scratch& scratch) {
        auto& eng = Context::get().eng;
        post_ = std::move(post);
        src_plain_ = plain(a);
        dst_plain_ = plain(dst);
        b_md_ = plain(b);
        auto pd = dnnl::matmul::primitive_desc(eng, src_plain_, b_md_, dst_plain_, make_attr(post_));
        impl_ = pd.impl_info_str();
        src_md_ = pd.src_desc();
        dst_md_ = pd.dst_desc();
        prim_ = dnnl::matmul(pd);
        prepare_reorders(scratch);
    }

    void run(const void* a, const void* b, void* dst, const std::vector<const void*>& binary,
             const void* residual, Scratch& scratch) {
        std::unordered_map<int, memory> args{
            {DNNL_ARG_WEIGHTS, memory(b_md_, Context::get().eng, const_cast<void*>(b))}};
        execute(args, a, dst, binary, residual, scratch);
    }

  private:
    memory::desc b_md_;
};

}  // namespace sol
