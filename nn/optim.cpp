#include "fovea/nn/optim.h"

#include <fmt/format.h>

#include "fovea/autograd/grad.h"
#include "fovea/ops/creation.h"
#include "fovea/ops/elementwise.h"
#include "fovea/ops/reduce.h"
#include "fovea/ops/state.h"

namespace fovea::nn {

namespace {

// Everything an optimizer builds goes under "optimizer/" with the update role, whatever
// scope the caller was in.
class UpdateScope {
 public:
  explicit UpdateScope(Graph& g) : graph_(g), scope_(g.exchange_scope("optimizer")), role_(g.role()) {
    g.set_role(NodeRole::update);
  }
  ~UpdateScope() {
    graph_.exchange_scope(scope_);
    graph_.set_role(role_);
  }

 private:
  Graph& graph_;
  std::string scope_;
  NodeRole role_;
};

// The parameter's name without its leading scope separators, for naming its state.
std::string state_name(Value p, const char* what) {
  std::string name = p.name();
  for (char& ch : name)
    if (ch == '/') ch = '.';
  return std::string(what) + "." + name;
}

void check_parameters(Value loss, const std::vector<Value>& parameters, const char* optimizer) {
  if (!loss.defined()) throw Error(fmt::format("{}: the loss is undefined", optimizer));
  if (parameters.empty()) throw Error(fmt::format("{}: no parameters to optimize", optimizer));
  for (const Value& p : parameters)
    if (!p.defined() || p.node().op != &parameter_op || !p.node().attrs.get_bool("trainable"))
      throw Error(fmt::format("{}: '{}' is not a trainable parameter", optimizer, p.defined() ? p.name() : "?"));
}

// Differentiates, counts the step, computes lr(t), the norm, and clips: what every optimizer
// shares. Returns t (this step's number, 1-based) as a float scalar.
Value begin_step(TrainStep& step, Value loss, const std::vector<Value>& parameters, const Schedule& lr,
                 double clip_norm, const std::optional<DataParallelOptions>& data_parallel) {
  Graph& g = loss.graph();
  step.grads = grad(loss, parameters);
  if (data_parallel) step.grads = average_gradients(step.grads, *data_parallel);
  UpdateScope scope(g);
  Value counter = g.state("step", DType::i64, {}, init::zeros());
  Value next = counter + 1.0;
  step.updates.push_back(assign(counter, next));
  step.step = next;
  const Value t = cast(next, loss.dtype());
  step.learning_rate = lr.build(t);
  step.grad_norm = global_norm(step.grads);
  step.applied_grads = clip_norm > 0 ? clip_by_global_norm(step.grads, step.grad_norm, clip_norm) : step.grads;
  return t;
}

}  // namespace

Value global_norm(const std::vector<Value>& grads) {
  Value total;
  for (const Value& gr : grads) {
    const Value s = reduce_sum(gr * gr);
    total = total.defined() ? total + s : s;
  }
  return sqrt(total);
}

std::vector<Value> clip_by_global_norm(const std::vector<Value>& grads, Value norm, double max_norm) {
  // scale = min(1, max_norm / (norm + 1e-6)); applied to every gradient alike.
  const Value scale = minimum(scalar_like(norm, 1.0), scalar_like(norm, max_norm) / (norm + 1e-6));
  std::vector<Value> clipped;
  for (const Value& gr : grads) clipped.push_back(gr * scale);
  return clipped;
}

TrainStep sgd(Value loss, const std::vector<Value>& parameters, const SgdOptions& o) {
  check_parameters(loss, parameters, "sgd");
  TrainStep step;
  begin_step(step, loss, parameters, o.lr, o.clip_norm, o.data_parallel);
  Graph& g = loss.graph();
  UpdateScope scope(g);
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    const Value p = parameters[i];
    Value d = step.applied_grads[i];
    if (o.weight_decay != 0) d = d + p * o.weight_decay;
    if (o.momentum != 0) {
      // v ← μv + d;  step along v, or along d + μv (Nesterov)
      const Value v = g.state(state_name(p, "velocity"), p.dtype(), p.shape(), init::zeros());
      const Value v_next = v * o.momentum + d;
      step.updates.push_back(assign(v, v_next));
      d = o.nesterov ? d + v_next * o.momentum : v_next;
    }
    step.updates.push_back(assign(p, p - step.learning_rate * d));
  }
  return step;
}

static TrainStep adam_impl(Value loss, const std::vector<Value>& parameters, const AdamOptions& o, bool decoupled) {
  check_parameters(loss, parameters, decoupled ? "adamw" : "adam");
  TrainStep step;
  const Value t = begin_step(step, loss, parameters, o.lr, o.clip_norm, o.data_parallel);
  Graph& g = loss.graph();
  UpdateScope scope(g);
  // Bias corrections 1 - β^t, shared by every parameter.
  const Value correction1 = 1.0 - pow(scalar_like(t, o.beta1), t);
  const Value correction2 = 1.0 - pow(scalar_like(t, o.beta2), t);
  const Value step_size = step.learning_rate / correction1;  // lr / (1 - β1^t)
  const Value root_c2 = sqrt(correction2);
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    const Value p = parameters[i];
    Value d = step.applied_grads[i];
    if (!decoupled && o.weight_decay != 0) d = d + p * o.weight_decay;
    const Value m = g.state(state_name(p, "adam_m"), p.dtype(), p.shape(), init::zeros());
    const Value v = g.state(state_name(p, "adam_v"), p.dtype(), p.shape(), init::zeros());
    // m ← β1·m + (1-β1)·d;  v ← β2·v + (1-β2)·d²
    const Value m_next = m * o.beta1 + d * (1 - o.beta1);
    const Value v_next = v * o.beta2 + (d * d) * (1 - o.beta2);
    step.updates.push_back(assign(m, m_next));
    step.updates.push_back(assign(v, v_next));
    // p ← p - lr·m̂/(√v̂ + ε), with m̂ = m/(1-β1^t), v̂ = v/(1-β2^t)
    Value p_next = p - step_size * m_next / (sqrt(v_next) / root_c2 + o.eps);
    if (decoupled && o.weight_decay != 0) p_next = p_next - step.learning_rate * o.weight_decay * p;
    step.updates.push_back(assign(p, p_next));
  }
  return step;
}

TrainStep adam(Value loss, const std::vector<Value>& parameters, const AdamOptions& o) {
  return adam_impl(loss, parameters, o, false);
}

TrainStep adamw(Value loss, const std::vector<Value>& parameters, const AdamOptions& o) {
  return adam_impl(loss, parameters, o, true);
}

}  // namespace fovea::nn
