"""Tests for sophia.py: numerics against float64 references, state round trip, estimators, validation."""

import io
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import sophia
from sophia import SophiaG, SophiaH, gnb_loss, hutchinson

NUM_STEPS = 32
HESSIAN_EVERY = 4
NUM_TOKENS = 32


def make_params():
    """Parameters covering the interesting cases: a matrix larger than a (patched) bucket, a bias,
    a non-contiguous parameter, and a parameter that never receives a gradient."""
    g = torch.Generator().manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(6, 40, generator=g, dtype=torch.float64))
    bias = torch.nn.Parameter(torch.randn(40, generator=g, dtype=torch.float64))
    transposed = torch.nn.Parameter(torch.randn(5, 7, generator=g, dtype=torch.float64).t())
    head = torch.nn.Parameter(torch.randn(3, 10, generator=g, dtype=torch.float64))
    frozen = torch.nn.Parameter(torch.randn(4, generator=g, dtype=torch.float64))
    assert not transposed.is_contiguous()
    return [weight, bias, transposed, head, frozen]


def param_groups(params, **defaults):
    weight, bias, transposed, head, frozen = params
    return [
        {"params": [weight, bias, transposed], **defaults},
        {"params": [head, frozen], **defaults, "lr": 0.05, "rho": 0.1, "weight_decay": 0.0, "betas": (0.9, 0.9)},
    ]


def fake_grad(step: int, index: int, shape, hessian: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 * step + 10 * index + hessian)
    return torch.randn(shape, generator=g, dtype=torch.float64)


def drive(opt, params, num_steps=NUM_STEPS, start=0):
    """Train with deterministic gradients (none for the last parameter) and a GNB refresh every few steps."""
    for step in range(start, num_steps):
        for i, p in enumerate(params[:-1]):
            p.grad = fake_grad(step, i, p.shape)
        opt.step()
        if step % HESSIAN_EVERY == HESSIAN_EVERY - 1:
            for i, p in enumerate(params[:-1]):
                p.grad = fake_grad(step, i, p.shape, hessian=True)
            opt.update_hessian(num_tokens=NUM_TOKENS)


def reference(params, groups, maximize, num_steps=NUM_STEPS):
    """The update rule of the issue, written out in float64 on plain tensors."""
    params = [p.detach().clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    h = [torch.zeros_like(p) for p in params]
    hyper = {}  # param index -> its group's hyperparameters
    for group, indices in zip(groups, ([0, 1, 2], [3, 4])):
        for i in indices:
            hyper[i] = group
    for step in range(num_steps):
        for i in range(len(params) - 1):
            c = hyper[i]
            g = -fake_grad(step, i, params[i].shape) if maximize else fake_grad(step, i, params[i].shape)
            params[i] = params[i] * (1 - c["lr"] * c["weight_decay"])
            m[i] = c["betas"][0] * m[i] + (1 - c["betas"][0]) * g
            params[i] = params[i] - c["lr"] * torch.clamp(m[i] / (c["rho"] * h[i] + c["eps"]), -1, 1)
        if step % HESSIAN_EVERY == HESSIAN_EVERY - 1:
            for i in range(len(params) - 1):
                g = fake_grad(step, i, params[i].shape, hessian=True)
                h[i] = hyper[i]["betas"][1] * h[i] + (1 - hyper[i]["betas"][1]) * NUM_TOKENS * g * g
    return params, m, h


DEFAULTS = dict(lr=0.02, betas=(0.965, 0.99), rho=0.04, weight_decay=0.1, eps=1e-15)


@pytest.fixture
def small_buckets(monkeypatch):
    """Buckets of 64 elements, so that the tests split the matrix and pack the small tensors together."""
    monkeypatch.setattr(sophia, "_CPU_BUCKET_NUMEL", 64)


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("foreach", [False, True])
def test_matches_float64_reference(small_buckets, foreach, maximize):
    params = make_params()
    start = [p.detach().clone() for p in params]
    opt = SophiaG(param_groups(params, **DEFAULTS), maximize=maximize, foreach=foreach)
    drive(opt, params)
    ref_params, ref_m, ref_h = reference(start, param_groups(start, **DEFAULTS), maximize)
    for p, rp, rm, rh in zip(params[:-1], ref_params, ref_m, ref_h):
        torch.testing.assert_close(p.detach(), rp, rtol=1e-6, atol=1e-12)
        torch.testing.assert_close(opt.state[p]["exp_avg"], rm, rtol=1e-6, atol=1e-12)
        torch.testing.assert_close(opt.state[p]["hessian"], rh, rtol=1e-6, atol=1e-12)
        assert opt.state[p]["step"].item() == NUM_STEPS
    assert torch.equal(params[-1].detach(), start[-1]) and params[-1] not in opt.state
    win_rate = opt.stats()["win_rate"].item()
    assert 0.05 < win_rate < 0.95, "the scenario should exercise both clipped and unclipped coordinates"


@pytest.mark.parametrize("maximize", [False, True])
def test_foreach_matches_per_tensor_bitwise(small_buckets, maximize):
    runs = []
    for foreach in (False, True):
        params = make_params()
        opt = SophiaG(param_groups(params, **DEFAULTS), maximize=maximize, foreach=foreach)
        drive(opt, params)
        runs.append((params, opt))
    (params_a, opt_a), (params_b, opt_b) = runs
    for a, b in zip(params_a[:-1], params_b[:-1]):
        assert torch.equal(a, b)
        for key in ("step", "exp_avg", "hessian"):
            assert torch.equal(opt_a.state[a][key], opt_b.state[b][key])
    for key in ("win_rate", "hessian_norm"):
        assert torch.equal(opt_a.stats()[key], opt_b.stats()[key])


def test_follows_official_step_with_bs():
    """Official code (Liuhong99/Sophia): h_off <- b2*h_off + (1-b2)*g*g and
    p <- p - lr * sign(m) * min(|m| / (rho * bs * h_off + 1e-15), 1). Ours with num_tokens=bs follows it."""
    params = make_params()
    start = [p.detach().clone() for p in params]
    opt = SophiaG(param_groups(params, **DEFAULTS))
    drive(opt, params)
    groups = param_groups(start, **DEFAULTS)
    for i, (p, p0) in enumerate(zip(params[:-1], start)):
        c = groups[0 if i < 3 else 1]
        (beta1, beta2), lr, rho, wd = c["betas"], c["lr"], c["rho"], c["weight_decay"]
        q, m, h_off = p0.clone(), torch.zeros_like(p0), torch.zeros_like(p0)
        for step in range(NUM_STEPS):
            q.mul_(1 - lr * wd)
            m.mul_(beta1).add_(fake_grad(step, i, q.shape), alpha=1 - beta1)
            ratio = (m.abs() / (rho * NUM_TOKENS * h_off + 1e-15)).clamp(None, 1)
            q.addcmul_(m.sign(), ratio, value=-lr)
            if step % HESSIAN_EVERY == HESSIAN_EVERY - 1:
                g = fake_grad(step, i, q.shape, hessian=True)
                h_off.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        torch.testing.assert_close(p.detach(), q, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(opt.state[p]["hessian"], NUM_TOKENS * h_off, rtol=1e-12, atol=0)


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # inductor's imports
def test_fused_matches_float64_reference():
    params = make_params()
    start = [p.detach().clone() for p in params]
    opt = SophiaG(param_groups(params, **DEFAULTS), maximize=True, fused=True)
    drive(opt, params)
    ref_params, ref_m, ref_h = reference(start, param_groups(start, **DEFAULTS), maximize=True)
    for p, rp, rm in zip(params[:-1], ref_params, ref_m):
        torch.testing.assert_close(p.detach(), rp, rtol=1e-6, atol=1e-12)
        torch.testing.assert_close(opt.state[p]["exp_avg"], rm, rtol=1e-6, atol=1e-12)
    per_tensor_params = make_params()
    per_tensor = SophiaG(param_groups(per_tensor_params, **DEFAULTS), maximize=True, foreach=False)
    drive(per_tensor, per_tensor_params)
    for key in ("win_rate", "hessian_norm"):
        torch.testing.assert_close(opt.stats()[key], per_tensor.stats()[key])


def test_state_dict_round_trip_continues_identically(small_buckets):
    params = make_params()
    opt = SophiaG(param_groups(params, **DEFAULTS))
    drive(opt, params, num_steps=7)
    saved = opt.stats()
    buffer = io.BytesIO()
    torch.save({"params": [p.detach().clone() for p in params], "optimizer": opt.state_dict()}, buffer)
    drive(opt, params, num_steps=NUM_STEPS, start=7)

    buffer.seek(0)
    checkpoint = torch.load(buffer)
    resumed = [torch.nn.Parameter(t.clone()) for t in checkpoint["params"]]
    resumed_opt = SophiaG(param_groups(resumed, lr=1.0))  # hyperparameters come from the checkpoint
    resumed_opt.load_state_dict(checkpoint["optimizer"])
    for key in ("win_rate", "hessian_norm"):  # the statistics are of the state: the loaded one's
        assert torch.equal(resumed_opt.stats()[key], saved[key])
    drive(resumed_opt, resumed, num_steps=NUM_STEPS, start=7)
    for a, b in zip(params, resumed):
        assert torch.equal(a, b)
    for key in ("win_rate", "hessian_norm"):
        torch.testing.assert_close(opt.stats()[key], resumed_opt.stats()[key])


def test_no_coordinate_moves_more_than_lr():
    g = torch.Generator().manual_seed(0)
    p = torch.nn.Parameter(torch.randn(1000, dtype=torch.float64, generator=g))
    lr, wd = 0.1, 0.3
    opt = SophiaG([p], lr=lr, weight_decay=wd, rho=0.04)
    p.grad = torch.randn(1000, dtype=torch.float64, generator=g) * torch.logspace(-6, 3, 1000, dtype=torch.float64)
    opt.update_hessian(num_tokens=8)  # h spans many scales, so some coordinates clip and some do not
    for _ in range(5):
        before = p.detach().clone()
        p.grad = torch.randn(1000, dtype=torch.float64, generator=g) * 1e3
        opt.step()
        move = (p.detach() - before * (1 - lr * wd)).abs()
        assert move.max() <= lr * (1 + 1e-12)
        clipped = move >= lr * (1 - 1e-12)
        assert 0 < clipped.sum() < 1000
        assert opt.stats()["win_rate"].item() == pytest.approx(1 - clipped.double().mean().item())


def test_stats_describe_last_step_and_hessian():
    params = make_params()
    opt = SophiaG(param_groups(params, **DEFAULTS))
    with pytest.raises(RuntimeError, match="step"):
        opt.stats()
    drive(opt, params, num_steps=HESSIAN_EVERY)  # ends with a Hessian refresh
    for i, p in enumerate(params[:-1]):
        p.grad = fake_grad(99, i, p.shape)
    opt.step()
    stats = opt.stats()
    assert all(t.dim() == 0 for t in stats.values())
    not_clipped, total = 0, 0
    for group in opt.param_groups:
        for p in group["params"]:
            if p.grad is None:
                continue
            m, h = opt.state[p]["exp_avg"], opt.state[p]["hessian"]
            not_clipped += (m.abs() / (group["rho"] * h + group["eps"]) < 1).sum().item()
            total += p.numel()
    assert stats["win_rate"].item() == pytest.approx(not_clipped / total)
    l1 = sum(s["hessian"].abs().sum().item() for s in opt.state.values())
    assert stats["hessian_norm"].item() == pytest.approx(l1, rel=1e-6)
    # after load_state_dict the statistics are those of the loaded state
    clones = [torch.nn.Parameter(p.detach().clone()) for p in params]
    reloaded = SophiaG(param_groups(clones, **DEFAULTS))
    reloaded.load_state_dict(opt.state_dict())
    for clone, p in zip(clones, params):
        clone.grad = p.grad
    reloaded.step()
    assert reloaded.stats()["hessian_norm"].item() == pytest.approx(l1, rel=1e-6)
    for i, p in enumerate(params[:-1]):
        p.grad = fake_grad(100, i, p.shape)
    opt.update_hessian(num_tokens=NUM_TOKENS)
    assert opt.stats()["hessian_norm"].item() > l1


def assert_unbiased(draws: torch.Tensor, expected: torch.Tensor):
    """The mean of the draws (first dim) is within 5 standard errors of `expected`, and the test has
    the power to tell: those standard errors are under 5% of |expected|."""
    sem = draws.std(0) / draws.size(0) ** 0.5
    assert (sem < 0.05 * expected.abs()).all()
    assert ((draws.mean(0) - expected).abs() < 5 * sem).all()


def test_gnb_estimate_is_unbiased():
    """N * g_hat^2, with g_hat the gradient of gnb_loss over N predictions, is unbiased for the
    Gauss-Newton diagonal of the mean loss: (1/N) sum_n sum_c p_nc (d/dW CE(logits_n, c))^2, computed
    here by enumerating the classes."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 3, generator=g, dtype=torch.float64)  # (B, T, D): N = 4 predictions
    weight = torch.nn.Parameter(torch.randn(5, 3, generator=g, dtype=torch.float64))  # (V, D)
    logits = x @ weight.T  # (B, T, V)
    n, num_classes = logits[..., 0].numel(), logits.size(-1)
    probs = logits.detach().softmax(-1).view(n, num_classes)
    exact = torch.zeros_like(weight)
    for i in range(n):
        for c in range(num_classes):
            ce = F.cross_entropy(logits.view(n, num_classes)[i], torch.tensor(c))
            (grad,) = torch.autograd.grad(ce, weight, retain_graph=True)
            exact += probs[i, c] * grad**2 / n

    # One GNB loss of N predictions through the optimizer: h = N * g_hat^2 (beta2 = 0 keeps only it)
    opt = SophiaG([weight], betas=(0.965, 0.0))
    gnb_loss(x @ weight.T, generator=g).backward()
    opt.update_hessian(num_tokens=n)
    torch.testing.assert_close(opt.state[weight]["hessian"], n * weight.grad**2)
    # Many independent draws at once: row k of `batched` is draw k's copy of the logits; scaling the
    # mean over all draws by their count gives each draw the gradient of its own mean loss.
    draws = 20000
    batched = logits.detach().expand(draws, *logits.shape).clone().requires_grad_()  # (K, B, T, V)
    (dlogits,) = torch.autograd.grad(draws * gnb_loss(batched, generator=g), batched)
    g_hat = torch.einsum("kbtv,btd->kvd", dlogits, x)  # (K, V, D): d(loss_k)/dW by the chain rule
    assert_unbiased(n * g_hat**2, exact)


def test_gnb_loss_samples_in_float32_and_backprops_to_bf16_logits():
    logits = torch.randn(3, 4, 11, dtype=torch.bfloat16, requires_grad=True)
    losses = [gnb_loss(logits, generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    assert losses[0].dtype == torch.float32 and torch.equal(losses[0], losses[1])
    losses[0].backward()
    assert logits.grad.dtype == torch.bfloat16 and logits.grad.abs().sum() > 0
    # sampled labels, not the argmax: with flat logits the loss is log(V) whatever the sample
    flat = torch.zeros(2, 7, requires_grad=True)
    assert gnb_loss(flat).item() == pytest.approx(torch.log(torch.tensor(7.0)).item())


def test_hutchinson_on_quadratics():
    a = torch.tensor([2.0, -3.0, 0.5, 0.0], dtype=torch.float64)
    x = torch.nn.Parameter(torch.randn(4, dtype=torch.float64))
    unused = torch.nn.Parameter(torch.randn(3, dtype=torch.float64))
    loss = 0.5 * (a * x * x).sum()
    est_x, est_unused = hutchinson(loss, [x, unused])
    assert torch.equal(est_x, a), "a diagonal Hessian is recovered exactly: u * (a * u) = a"
    assert torch.equal(est_unused, torch.zeros(3, dtype=torch.float64))

    opt = SophiaH([x, unused], betas=(0.965, 0.0))
    opt.update_hessian([x, unused], [est_x, est_unused])
    assert torch.equal(opt.state[x]["hessian"], a.clamp_min(0)), "only the positive part is kept"

    g = torch.Generator().manual_seed(0)
    b = torch.randn(4, 4, generator=g, dtype=torch.float64)
    hessian = b @ b.T  # coupled coordinates: single estimates are noisy, their mean is the diagonal
    draws = torch.stack([hutchinson(0.5 * x @ hessian @ x, [x], generator=g)[0] for _ in range(2000)])
    assert not torch.allclose(draws[0], hessian.diagonal())
    assert_unbiased(draws, hessian.diagonal())


def test_hutchinson_through_attention_needs_the_math_kernel():
    torch.manual_seed(0)
    qkv = torch.nn.Linear(8, 24)
    x = torch.randn(2, 5, 8)

    def loss():
        q, k, v = qkv(x).view(2, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)  # 3 x (B, heads, T, head_dim)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True).pow(2).mean()

    with pytest.raises(RuntimeError, match="derivative for .* is not implemented"):
        hutchinson(loss(), list(qkv.parameters()))  # the default (flash) kernel has no double backward
    with sdpa_kernel(SDPBackend.MATH):
        estimates = hutchinson(loss(), list(qkv.parameters()))
    assert all(e.shape == p.shape for e, p in zip(estimates, qkv.parameters()))
    assert all(e.abs().sum() > 0 for e in estimates)


def test_sophia_g_and_h_train_a_classifier():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 10, generator=g)
    y = (x @ torch.randn(10, 4, generator=g)).argmax(-1)
    for cls in (SophiaG, SophiaH):
        torch.manual_seed(0)
        model = torch.nn.Linear(10, 4)
        opt = cls(model.parameters(), lr=0.05, rho=0.05, weight_decay=0.0)
        first = F.cross_entropy(model(x), y).item()
        for step in range(60):
            if step % 5 == 0:
                model.zero_grad()
                if cls is SophiaG:
                    gnb_loss(model(x), generator=g).backward()
                    opt.update_hessian(num_tokens=len(x))
                else:
                    params = list(model.parameters())
                    opt.update_hessian(params, hutchinson(F.cross_entropy(model(x), y), params, generator=g))
            model.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        assert F.cross_entropy(model(x), y).item() < 0.5 * first, cls.__name__


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(lr=-1e-3),
        dict(rho=-0.1),
        dict(weight_decay=-0.1),
        dict(eps=-1.0),
        dict(lr=float("nan")),
        dict(betas=(1.0, 0.99)),
        dict(betas=(0.9, -0.1)),
        dict(betas=(0.9,)),
        dict(foreach=True, fused=True),
    ],
)
def test_invalid_hyperparameters_raise(kwargs):
    with pytest.raises(ValueError):
        SophiaG([torch.nn.Parameter(torch.zeros(2))], **kwargs)


def test_invalid_per_group_hyperparameters_raise():
    with pytest.raises(ValueError, match="rho"):
        SophiaG([{"params": [torch.nn.Parameter(torch.zeros(2))], "rho": -1.0}])


@pytest.mark.parametrize("num_tokens", [0, -8, float("nan"), float("inf"), "512", True])
def test_invalid_num_tokens_raise(num_tokens):
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.ones(2)
    with pytest.raises(ValueError, match="num_tokens"):
        SophiaG([p]).update_hessian(num_tokens=num_tokens)


def test_sparse_gradients_raise():
    embedding = torch.nn.Embedding(10, 3, sparse=True)
    embedding(torch.tensor([1, 2])).sum().backward()
    opt = SophiaG(embedding.parameters())
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.update_hessian(num_tokens=2)


def test_sophia_h_rejects_misaligned_estimates():
    p, q = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    opt = SophiaH([p])
    with pytest.raises(ValueError, match="one estimate per parameter"):
        opt.update_hessian([p], [])
    with pytest.raises(ValueError, match="shape"):
        opt.update_hessian([p], [torch.zeros(3)])
    with pytest.raises(ValueError, match="not a parameter of this optimizer"):
        opt.update_hessian([q], [torch.zeros(3)])


@pytest.mark.cuda
def test_cuda_paths_agree_and_stats_stay_on_device():
    results = []
    for kwargs in (dict(foreach=False), dict(foreach=True), dict(fused=True)):
        params = [torch.nn.Parameter(p.detach().float().cuda()) for p in make_params()]
        opt = SophiaG(param_groups(params, **DEFAULTS), **kwargs)
        for step in range(NUM_STEPS):
            for i, p in enumerate(params[:-1]):
                p.grad = fake_grad(step, i, p.shape).float().cuda()
            opt.step()
            if step % HESSIAN_EVERY == HESSIAN_EVERY - 1:
                for i, p in enumerate(params[:-1]):
                    p.grad = fake_grad(step, i, p.shape, hessian=True).float().cuda()
                opt.update_hessian(num_tokens=NUM_TOKENS)
        assert all(t.is_cuda for t in opt.stats().values())
        results.append(params)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_readme_example_runs_and_learns(capsys):
    """The README's "Using Sophia in your own training loop" example, run as written."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Using Sophia in your own training loop", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    printed = re.findall(r"step (\d+): loss ([\d.]+), win_rate ([\d.]+)", capsys.readouterr().out)
    assert [int(step) for step, _, _ in printed] == [50, 100, 150, 200]
    losses = [float(loss) for _, loss, _ in printed]
    assert losses[-1] < 0.1 * losses[0]
    assert all(0.0 <= float(win) <= 1.0 for _, _, win in printed)
