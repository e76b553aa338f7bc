// A libtorch autograd node whose forward and backward are Rust functions.
//
// tch has no binding for `torch::autograd::Function` (tch-rs issues #70, #279,
// #437), and without one a hand-written backward cannot take part in
// `loss.backward()`. This file is the whole bridge: `rnnlab_apply` runs a Rust
// forward inside a `Function` node and the node calls the Rust backward when
// autograd reaches it. It knows nothing of recurrent cells; the kernels and
// their gradients live in Rust (`src/kernel/`).
//
// Tensors cross as `at::Tensor*` handles, the same as tch's `C_tensor`: each
// handle this file passes to Rust is a new one that Rust owns and frees; each
// handle Rust returns is taken over here.
#include <torch/csrc/autograd/custom_function.h>

#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

extern "C" {
// forward(op, inputs, n_in, outputs[n_out], saved[n_saved_max], &n_saved, err, err_len) -> 0 on success
typedef int (*rnnlab_forward_fn)(const void*, at::Tensor**, size_t, at::Tensor**, size_t,
                                 at::Tensor**, size_t, size_t*, char*, size_t);
// backward(op, saved, n_saved, grad_outputs, n_out, grad_inputs[n_in], err, err_len) -> 0 on success
typedef int (*rnnlab_backward_fn)(const void*, at::Tensor**, size_t, at::Tensor**, size_t,
                                  at::Tensor**, size_t, char*, size_t);
}

namespace {

constexpr size_t kMaxSaved = 32;
constexpr size_t kErrLen = 1024;

std::vector<at::Tensor*> handles(const std::vector<at::Tensor>& ts) {
  std::vector<at::Tensor*> out;
  out.reserve(ts.size());
  for (const auto& t : ts) out.push_back(new at::Tensor(t));
  return out;
}

// Takes over handles written by Rust; a null handle is an undefined tensor.
std::vector<at::Tensor> take(at::Tensor** ptrs, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (ptrs[i] == nullptr) {
      out.emplace_back();
    } else {
      out.push_back(*ptrs[i]);
      delete ptrs[i];
    }
  }
  return out;
}

struct RustFunction : public torch::autograd::Function<RustFunction> {
  static variable_list forward(AutogradContext* ctx, at::TensorList inputs, int64_t op,
                               int64_t fwd, int64_t bwd, int64_t n_out) {
    std::vector<at::Tensor*> in = handles(inputs.vec());
    std::vector<at::Tensor*> out(n_out, nullptr), saved(kMaxSaved, nullptr);
    size_t n_saved = 0;
    char err[kErrLen] = {0};
    int rc = reinterpret_cast<rnnlab_forward_fn>(fwd)(
        reinterpret_cast<const void*>(op), in.data(), in.size(), out.data(), out.size(),
        saved.data(), saved.size(), &n_saved, err, kErrLen);
    // Rust freed the input handles it was given.
    std::vector<at::Tensor> outputs = take(out.data(), out.size());
    std::vector<at::Tensor> kept = take(saved.data(), n_saved);
    if (rc != 0) throw std::runtime_error(err);
    // Every input, then what the kernel kept, through save_for_backward: each
    // becomes a SavedVariable, which records the tensor's version (so an
    // in-place change before backward is an error), holds an output of this
    // node without a strong reference back to the node (no reference cycle, so
    // the graph is freed with its last tensor), and is released after the
    // first backward unless the graph is retained.
    variable_list to_save = inputs.vec();
    to_save.insert(to_save.end(), kept.begin(), kept.end());
    ctx->save_for_backward(to_save);
    ctx->saved_data["op"] = op;
    ctx->saved_data["bwd"] = bwd;
    ctx->saved_data["n_in"] = static_cast<int64_t>(inputs.size());
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    // The Rust backward is not itself recorded by autograd: refuse a graph of
    // the gradient (create_graph=true) rather than return a wrong one.
    if (torch::autograd::GradMode::is_enabled())
      throw std::runtime_error(
          "rnnlab's hand-written kernels have no double backward (create_graph=true); "
          "run the cell step by step (seq_steps) for higher derivatives");
    // Raises libtorch's "Trying to backward through the graph a second time"
    // once the saved tensors were released, and its in-place error when a
    // saved tensor changed since forward.
    variable_list kept = ctx->get_saved_variables();
    auto op = ctx->saved_data["op"].toInt();
    auto bwd = ctx->saved_data["bwd"].toInt();
    auto n_in = static_cast<size_t>(ctx->saved_data["n_in"].toInt());
    std::vector<at::Tensor*> saved = handles(kept), grads = handles(grad_outputs);
    std::vector<at::Tensor*> grad_in(n_in, nullptr);
    char err[kErrLen] = {0};
    int rc = reinterpret_cast<rnnlab_backward_fn>(bwd)(
        reinterpret_cast<const void*>(op), saved.data(), saved.size(), grads.data(), grads.size(),
        grad_in.data(), grad_in.size(), err, kErrLen);
    variable_list result = take(grad_in.data(), grad_in.size());
    if (rc != 0) throw std::runtime_error(err);
    // no gradient for the four non-tensor arguments
    for (int i = 0; i < 4; ++i) result.emplace_back();
    return result;
  }
};

}  // namespace

extern "C" {

// Applies the Rust function `op` to `inputs` (handles borrowed, not freed) and
// writes `n_out` new handles to `outputs`. Returns 0, or 1 with a message in `err`.
int rnnlab_apply(const void* op, rnnlab_forward_fn fwd, rnnlab_backward_fn bwd,
                 at::Tensor** inputs, size_t n_in, at::Tensor** outputs, size_t n_out,
                 char* err, size_t err_len) {
  try {
    std::vector<at::Tensor> in;
    in.reserve(n_in);
    for (size_t i = 0; i < n_in; ++i) in.push_back(*inputs[i]);
    variable_list out = RustFunction::apply(
        at::TensorList(in), reinterpret_cast<int64_t>(op), reinterpret_cast<int64_t>(fwd),
        reinterpret_cast<int64_t>(bwd), static_cast<int64_t>(n_out));
    if (out.size() != n_out) throw std::runtime_error("wrong number of outputs");
    for (size_t i = 0; i < n_out; ++i) outputs[i] = new at::Tensor(out[i]);
    return 0;
  } catch (const std::exception& e) {
    std::snprintf(err, err_len, "%s", e.what());
    return 1;
  }
}

}  // extern "C"

// Autograd introspection for Rust, as PyTorch offers it in Python: a tensor's
// `grad_fn` name, and weak references (`weakref.ref(t)`) that tell whether a
// tensor, and with it the graph it holds, was freed.
extern "C" {

// Writes the name of `t`'s grad_fn into `out`; returns 0 when it has none.
int rnnlab_grad_fn_name(const at::Tensor* t, char* out, size_t len) {
  const auto& fn = t->grad_fn();
  if (!fn) return 0;
  std::snprintf(out, len, "%s", fn->name().c_str());
  return 1;
}

void* rnnlab_weak_new(const at::Tensor* t) {
  return new c10::weak_intrusive_ptr<c10::TensorImpl>(t->getIntrusivePtr());
}

int rnnlab_weak_alive(const void* w) {
  return static_cast<const c10::weak_intrusive_ptr<c10::TensorImpl>*>(w)->expired() ? 0 : 1;
}

void rnnlab_weak_free(void* w) {
  delete static_cast<c10::weak_intrusive_ptr<c10::TensorImpl>*>(w);
}

}  // extern "C"
