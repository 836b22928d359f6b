"""Pure-torch reference layers: the math of each mixer written out plainly, for checks and CPU runs.

Why: the real kernels (mamba_ssm's CUDA selective scan and Triton SSD, SDPA flash/cuDNN) need a
GPU and are too fused to read. These modules compute the same functions step by step (sequential
scans, explicit softmax), in any dtype (float32/float64 on CPU), so that
- CPU tests can drive the whole harness on real arithmetic at tiny sizes, and
- GPU tests can check the real layers against them (same weights, relative error bounds).

Parameter names and shapes match the real modules (`mamba_ssm.Mamba`, `mamba_ssm.Mamba2`, and
`models.torch_layers.Attention`/`MLP`), so `ref.load_state_dict(real_weights)` just works; their
counts equal each spec's `params`. Every layer has the same interface as the real layers:
`forward(x)` over (B, L, d); `allocate_cache(batch, context)`; `decode(x, cache)` for one token per
sequence at position `context`; plus `forward_with_cache(x)`, which also returns the cache after
the prompt (sized for the next token), so tests can check decode against a longer prefill.

Sources: mamba_ssm 2.3.2 `modules/mamba_simple.py` (Mamba-1, arXiv 2312.00752 Alg. 2),
`modules/mamba2.py` and `ops/triton/layernorm_gated.py` (Mamba-2 with grouped gated RMSNorm,
arXiv 2405.21060), `modules/mamba3.py` and `ops/triton/mamba3/` (Mamba-3 SISO, arXiv 2603.15569),
flash-linear-attention 0.6.0 `ops/gated_delta_rule/naive.py` (Gated DeltaNet, arXiv 2412.06464), Megatron-LM rotary embedding (non-interleaved, "rotate half").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.specs import (AttentionSpec, GatedDeltaNetSpec, Mamba2Spec, Mamba3Spec, MambaSpec, MixerSpec, MLPSpec,
                          NormSpec)


# ----------------------------------------------------------------------------- shared pieces

def activation(name: str, x: torch.Tensor) -> torch.Tensor:
    """The MLP activations the specs allow; squared ReLU as in Primer / Megatron `squared_relu`."""
    if name == "squared_relu":
        return torch.relu(x).square()
    if name == "gelu":
        return F.gelu(x)
    if name == "silu":
        return F.silu(x)
    if name == "relu":
        return torch.relu(x)
    raise ValueError(f"unknown activation {name!r}")


def rotary_dim(spec: AttentionSpec) -> int:
    """Rotated channels per head: rotary_fraction of head_dim, rounded down to an even number."""
    return int(spec.head_dim * spec.rotary_fraction) // 2 * 2


def rope_tables(spec: AttentionSpec, positions: torch.Tensor, dtype: torch.dtype):
    """cos/sin of shape (len(positions), rotary_dim/2) for the non-interleaved rotary embedding."""
    rd = rotary_dim(spec)
    inv_freq = 1.0 / (spec.rope_base ** (torch.arange(0, rd, 2, device=positions.device,
                                                      dtype=torch.float64) / rd))
    angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first 2*cos.shape[-1] channels of x (..., L, heads, head_dim); keep the rest.

    cos/sin are (L, rd/2). "Rotate half" layout (GPT-NeoX / Megatron default, not interleaved).
    """
    half = cos.shape[-1]
    if half == 0:
        return x
    x1, x2, rest = x[..., :half], x[..., half:2 * half], x[..., 2 * half:]
    c, s = cos[:, None, :], sin[:, None, :]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s, rest], dim=-1)


class RefNorm(nn.Module):
    """RMSNorm (weight only) or LayerNorm (weight and bias), computed in the input's dtype."""

    def __init__(self, spec: NormSpec, device=None, dtype=None):
        super().__init__()
        self.kind, self.eps = spec.kind, spec.eps
        self.weight = nn.Parameter(torch.ones(spec.d_model, device=device, dtype=dtype))
        if spec.kind == "layernorm":
            self.bias = nn.Parameter(torch.zeros(spec.d_model, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "layernorm":
            mean = x.mean(-1, keepdim=True)
            var = (x - mean).square().mean(-1, keepdim=True)
            return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias
        return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + self.eps) * self.weight


def _causal_depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
    """x (B, L, C), weight (C, 1, W): y_t = sum_k w_k x_{t-W+1+k} + b, zero history before t=0."""
    width = weight.shape[-1]
    padded = F.pad(x.transpose(1, 2), (width - 1, 0))
    y = F.conv1d(padded, weight, bias, groups=weight.shape[0])
    return y.transpose(1, 2)


def _conv_state_after(x: torch.Tensor, width: int) -> torch.Tensor:
    """The last `width` inputs (B, C, width), zero-padded on the left for short prompts."""
    xt = x.transpose(1, 2)
    return F.pad(xt, (width - xt.shape[-1], 0)) if xt.shape[-1] < width else xt[..., -width:].clone()


def _conv_step(conv_state: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
    """Shift the (B, C, W) window left by one, append x (B, C), return the conv output (B, C)."""
    conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=-1))
    conv_state[:, :, -1] = x
    y = (conv_state * weight[:, 0, :]).sum(-1)
    return y + bias if bias is not None else y


# ----------------------------------------------------------------------------- Mamba-1

class RefMamba(nn.Module):
    """Mamba-1 mixer (selective scan, sequential over time); parameters as `mamba_ssm.Mamba`."""

    def __init__(self, spec: MambaSpec, device=None, dtype=None):
        super().__init__()
        self.spec = spec
        kw = {"device": device, "dtype": dtype}
        di, n, r = spec.d_inner, spec.d_state, spec.dt_rank
        self.in_proj = nn.Linear(spec.d_model, 2 * di, bias=spec.bias, **kw)
        self.conv1d = nn.Conv1d(di, di, spec.d_conv, groups=di, bias=spec.conv_bias,
                                padding=spec.d_conv - 1, **kw)
        self.x_proj = nn.Linear(di, r + 2 * n, bias=False, **kw)
        self.dt_proj = nn.Linear(r, di, bias=True, **kw)
        a = torch.arange(1, n + 1, device=device, dtype=torch.float32).repeat(di, 1)
        self.A_log = nn.Parameter(torch.log(a).to(dtype or torch.float32))
        self.D = nn.Parameter(torch.ones(di, **kw))
        self.out_proj = nn.Linear(di, spec.d_model, bias=spec.bias, **kw)

    def _project(self, x: torch.Tensor):
        dt_bcs = self.x_proj(x)
        dt, b, c = torch.split(dt_bcs, [self.spec.dt_rank, self.spec.d_state, self.spec.d_state], -1)
        delta = F.softplus(F.linear(dt, self.dt_proj.weight) + self.dt_proj.bias)
        return delta, b, c

    def forward_with_cache(self, u: torch.Tensor):
        xz = self.in_proj(u)
        x, z = xz.chunk(2, dim=-1)
        conv_state = _conv_state_after(x, self.spec.d_conv)
        x = F.silu(_causal_depthwise_conv(x, self.conv1d.weight, self.conv1d.bias))
        delta, b, c = self._project(x)
        a = -torch.exp(self.A_log.to(x.dtype))  # (di, n)
        h = torch.zeros(u.shape[0], self.spec.d_inner, self.spec.d_state, dtype=x.dtype, device=x.device)
        ys = []
        for t in range(u.shape[1]):
            h = torch.exp(delta[:, t, :, None] * a) * h + (delta[:, t, :, None] * b[:, t, None, :]
                                                          * x[:, t, :, None])
            ys.append((h * c[:, t, None, :]).sum(-1))
        y = torch.stack(ys, dim=1) + self.D * x
        y = y * F.silu(z)
        return self.out_proj(y), (conv_state, h)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.forward_with_cache(u)[0]

    def allocate_cache(self, batch: int, context: int, dtype=None):
        dtype = dtype or self.in_proj.weight.dtype
        dev = self.in_proj.weight.device
        di = self.spec.d_inner
        return (torch.zeros(batch, di, self.spec.d_conv, device=dev, dtype=dtype),
                torch.zeros(batch, di, self.spec.d_state, device=dev, dtype=dtype))

    def decode(self, u: torch.Tensor, cache) -> torch.Tensor:
        conv_state, ssm_state = cache
        x, z = self.in_proj(u[:, 0]).chunk(2, dim=-1)
        x = F.silu(_conv_step(conv_state, x, self.conv1d.weight, self.conv1d.bias))
        delta, b, c = self._project(x)
        a = -torch.exp(self.A_log.to(x.dtype))
        ssm_state.copy_(torch.exp(delta[:, :, None] * a) * ssm_state
                        + delta[:, :, None] * b[:, None, :] * x[:, :, None])
        y = (ssm_state * c[:, None, :]).sum(-1) + self.D * x
        return self.out_proj(y * F.silu(z))[:, None]


# ----------------------------------------------------------------------------- Mamba-2

class RefMamba2(nn.Module):
    """Mamba-2 mixer (SSD as its recurrence, sequential over time); parameters as `mamba_ssm.Mamba2`.

    The chunked algorithm (chunk_size) computes the same function; only the real kernel uses it.
    """

    def __init__(self, spec: Mamba2Spec, device=None, dtype=None):
        super().__init__()
        self.spec = spec
        kw = {"device": device, "dtype": dtype}
        self.in_proj = nn.Linear(spec.d_model, spec.d_in_proj, bias=spec.bias, **kw)
        self.conv1d = nn.Conv1d(spec.conv_dim, spec.conv_dim, spec.d_conv, groups=spec.conv_dim,
                                bias=spec.conv_bias, padding=spec.d_conv - 1, **kw)
        h = spec.nheads
        self.dt_bias = nn.Parameter(torch.linspace(-4.0, -2.0, h, **kw))
        self.A_log = nn.Parameter(torch.log(torch.linspace(1.0, 16.0, h, **kw)))
        self.D = nn.Parameter(torch.ones(h, **kw))
        if spec.rmsnorm:
            self.norm = nn.Module()
            self.norm.weight = nn.Parameter(torch.ones(spec.d_inner, **kw))
        self.out_proj = nn.Linear(spec.d_inner, spec.d_model, bias=spec.bias, **kw)

    def _split(self, zxbcdt: torch.Tensor):
        s = self.spec
        return torch.split(zxbcdt, [s.d_inner, s.conv_dim, s.nheads], dim=-1)

    def _heads(self, xbc: torch.Tensor):
        """x (..., h, p), B and C (..., h, n): each head reads its group's B and C."""
        s = self.spec
        x, b, c = torch.split(xbc, [s.d_inner, s.ngroups * s.d_state, s.ngroups * s.d_state], dim=-1)
        x = x.unflatten(-1, (s.nheads, s.headdim))
        rep = s.nheads // s.ngroups
        b = b.unflatten(-1, (s.ngroups, s.d_state)).repeat_interleave(rep, dim=-2)
        c = c.unflatten(-1, (s.ngroups, s.d_state)).repeat_interleave(rep, dim=-2)
        return x, b, c

    def _gate_norm_out(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Grouped gated RMSNorm (norm_before_gate=False: norm(y * silu(z)) per group), out_proj."""
        s = self.spec
        if s.rmsnorm:
            g = (y * F.silu(z)).unflatten(-1, (s.ngroups, s.d_inner // s.ngroups))
            g = g * torch.rsqrt(g.square().mean(-1, keepdim=True) + 1e-5)
            y = g.flatten(-2) * self.norm.weight
        else:
            y = y * F.silu(z)
        return self.out_proj(y)

    def forward_with_cache(self, u: torch.Tensor):
        z, xbc, dt = self._split(self.in_proj(u))
        conv_state = _conv_state_after(xbc, self.spec.d_conv)
        xbc = F.silu(_causal_depthwise_conv(xbc, self.conv1d.weight, self.conv1d.bias))
        x, b, c = self._heads(xbc)  # (B, L, h, p), (B, L, h, n)
        dt = F.softplus(dt + self.dt_bias)  # (B, L, h)
        a = -torch.exp(self.A_log)
        s = self.spec
        state = torch.zeros(u.shape[0], s.nheads, s.headdim, s.d_state, dtype=x.dtype, device=x.device)
        ys = []
        for t in range(u.shape[1]):
            decay = torch.exp(dt[:, t] * a)[:, :, None, None]
            state = decay * state + (dt[:, t, :, None, None] * x[:, t, :, :, None] * b[:, t, :, None, :])
            ys.append((state * c[:, t, :, None, :]).sum(-1) + self.D[:, None] * x[:, t])
        y = torch.stack(ys, dim=1).flatten(-2)
        return self._gate_norm_out(y, z), (conv_state, state)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.forward_with_cache(u)[0]

    def allocate_cache(self, batch: int, context: int, dtype=None):
        dtype = dtype or self.in_proj.weight.dtype
        dev = self.in_proj.weight.device
        s = self.spec
        return (torch.zeros(batch, s.conv_dim, s.d_conv, device=dev, dtype=dtype),
                torch.zeros(batch, s.nheads, s.headdim, s.d_state, device=dev, dtype=dtype))

    def decode(self, u: torch.Tensor, cache) -> torch.Tensor:
        conv_state, ssm_state = cache
        z, xbc, dt = self._split(self.in_proj(u[:, 0]))
        xbc = F.silu(_conv_step(conv_state, xbc, self.conv1d.weight, self.conv1d.bias))
        x, b, c = self._heads(xbc)  # (B, h, p), (B, h, n)
        dt = F.softplus(dt + self.dt_bias)
        decay = torch.exp(dt * -torch.exp(self.A_log))[:, :, None, None]
        ssm_state.copy_(decay * ssm_state + dt[:, :, None, None] * x[..., None] * b[:, :, None, :])
        y = (ssm_state * c[:, :, None, :]).sum(-1) + self.D[:, None] * x
        return self._gate_norm_out(y.flatten(-2), z)[:, None]


# ----------------------------------------------------------------------------- Mamba-3

def _rms(x: torch.Tensor, weight: torch.Tensor | None, eps: float = 1e-5) -> torch.Tensor:
    y = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps)
    return y * weight if weight is not None else y


def _rotate_pairs(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (2i, 2i+1) of x (..., N) by angles (..., S), i < S; keep the rest
    (mamba_ssm's SISO kernels: `rotate_pairwise`, `tl.split(reshape(x, [N/2, 2]))`)."""
    s = angles.shape[-1]
    pairs = x.unflatten(-1, (x.shape[-1] // 2, 2))
    x0, x1 = pairs[..., :s, 0], pairs[..., :s, 1]
    cos, sin = angles.cos(), angles.sin()
    rotated = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    return torch.cat([rotated, pairs[..., s:, :]], dim=-2).flatten(-2)


class RefMamba3(nn.Module):
    """Mamba-3 mixer, SISO, its trapezoidal recurrence sequential over time; parameters as
    `mamba_ssm.Mamba3` (in_proj, dt_bias, B_bias, C_bias, B_norm, C_norm, D, [mimo_x/z/o], [norm], out_proj).

    Per token t and head: a = exp(A dt), beta = a dt (1 - trap), gamma = trap dt (trap = sigmoid);
    k, q = rotate(norm(B) + B_bias), rotate(norm(C) + C_bias) by the running angle
    sum(tanh(angle) * pi * dt); h_t = a h_{t-1} + beta v_{t-1} k_{t-1}^T + gamma v_t k_t^T;
    y = (h_t q + D v) * silu(z); out_proj. (`ops/triton/mamba3/mamba3_siso_step.py`, the same function
    the chunked `mamba3_siso_fwd` computes.) MIMO (mimo_rank > 1) builds its parameters only.
    The cache is (angle, ssm, k, v) as `Mamba3.allocate_inference_cache` lays it out.
    """

    A_FLOOR = 1e-4  # mamba_ssm Mamba3's A_floor default

    def __init__(self, spec: Mamba3Spec, device=None, dtype=None):
        super().__init__()
        self.spec = spec
        kw = {"device": device, "dtype": dtype}
        h, n, r = spec.nheads, spec.d_state, spec.mimo_rank
        self.in_proj = nn.Linear(spec.d_model, spec.d_in_proj, bias=False, **kw)
        self.dt_bias = nn.Parameter(torch.linspace(-4.0, -2.0, h, **kw))
        self.B_bias = nn.Parameter(torch.ones(h, r, n, **kw))
        self.C_bias = nn.Parameter(torch.ones(h, r, n, **kw))
        self.B_norm, self.C_norm = nn.Module(), nn.Module()
        self.B_norm.weight = nn.Parameter(torch.ones(n, **kw))
        self.C_norm.weight = nn.Parameter(torch.ones(n, **kw))
        if spec.is_mimo:
            for name in ("mimo_x", "mimo_z", "mimo_o"):
                setattr(self, name, nn.Parameter(torch.ones(h, r, spec.headdim, **kw) / r))
        self.D = nn.Parameter(torch.ones(h, **kw))
        if spec.is_outproj_norm:
            self.norm = nn.Module()
            self.norm.weight = nn.Parameter(torch.ones(spec.d_inner, **kw))
        self.out_proj = nn.Linear(spec.d_inner, spec.d_model, bias=False, **kw)

    def _inputs(self, zx: torch.Tensor):
        """Per-token pieces from the in_proj output (..., d_in_proj): z, x (.., h, p); k, q before
        rotation (.., h, n); dt, adt, trap (.., h); angle increments (.., h, s)."""
        s = self.spec
        if s.is_mimo:
            raise NotImplementedError("mamba3 reference: MIMO is not written out (SISO only)")
        h, p, n = s.nheads, s.headdim, s.d_state
        z, x, b, c, dd_dt, dd_a, trap, angles = torch.split(
            zx, [s.d_inner, s.d_inner, s.bc_dim, s.bc_dim, h, h, h, s.num_rope_angles], dim=-1)
        rep = h // s.ngroups
        b = _rms(b.unflatten(-1, (s.ngroups, n)), self.B_norm.weight).repeat_interleave(rep, dim=-2)
        c = _rms(c.unflatten(-1, (s.ngroups, n)), self.C_norm.weight).repeat_interleave(rep, dim=-2)
        k, q = b + self.B_bias[:, 0], c + self.C_bias[:, 0]
        a = torch.clamp(-F.softplus(dd_a), max=-self.A_FLOOR)
        dt = F.softplus(dd_dt + self.dt_bias)
        step_angles = torch.tanh(angles)[..., None, :] * math.pi * dt[..., None]
        return (z.unflatten(-1, (h, p)), x.unflatten(-1, (h, p)), k, q, dt, a * dt, torch.sigmoid(trap),
                step_angles)

    def _step(self, state, z, x, k, q, dt, adt, trap, step_angles):
        """One token for every sequence: updates `state` = [angle, h, k_prev, v_prev] in place, returns y."""
        angle, h, k_prev, v_prev = state
        # The kernels keep the running angle in [0, 2 pi) (angle_dt.py, mamba3_siso_step.py: x - 2 pi floor(x / 2 pi));
        # the rotation is the same, the cached angle then equals theirs.
        angle.copy_(torch.remainder(angle + step_angles, 2 * math.pi))
        k, q = _rotate_pairs(k, angle), _rotate_pairs(q, angle)
        alpha = torch.exp(adt)[..., None, None]
        beta = (torch.exp(adt) * dt * (1 - trap))[..., None, None]
        gamma = (trap * dt)[..., None, None]
        h.copy_(alpha * h + beta * torch.einsum("bhp,bhn->bhpn", v_prev, k_prev)
                + gamma * torch.einsum("bhp,bhn->bhpn", x, k))
        k_prev.copy_(k)
        v_prev.copy_(x)
        y = torch.einsum("bhpn,bhn->bhp", h, q) + self.D[:, None] * x
        return y * F.silu(z)

    def _out(self, y: torch.Tensor) -> torch.Tensor:
        return self.out_proj(y.flatten(-2))

    def _empty_state(self, batch: int, like: torch.Tensor):
        s = self.spec
        h = s.nheads
        return [like.new_zeros(batch, h, s.num_rope_angles), like.new_zeros(batch, h, s.headdim, s.d_state),
                like.new_zeros(batch, h, s.d_state), like.new_zeros(batch, h, s.headdim)]

    def forward_with_cache(self, u: torch.Tensor):
        pieces = self._inputs(self.in_proj(u))
        state = self._empty_state(u.shape[0], u)
        ys = [self._step(state, *(t[:, i] for t in pieces)) for i in range(u.shape[1])]
        angle, h, k_prev, v_prev = state
        return self._out(torch.stack(ys, dim=1)), (angle, h, k_prev[:, None], v_prev)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.forward_with_cache(u)[0]

    def allocate_cache(self, batch: int, context: int, dtype=None):
        """(angle (B, H, S), ssm (B, H, P, N), k (B, 1, H, N), v (B, H, P)), as mamba_ssm allocates them."""
        s = self.spec
        dtype = dtype or self.in_proj.weight.dtype
        dev = self.in_proj.weight.device
        h = s.nheads
        return (torch.zeros(batch, h, s.num_rope_angles, device=dev, dtype=dtype),
                torch.zeros(batch, h, s.headdim, s.d_state, device=dev, dtype=dtype),
                torch.zeros(batch, s.mimo_rank, h, s.d_state, device=dev, dtype=dtype),
                torch.zeros(batch, h, s.headdim, device=dev, dtype=dtype))

    def decode(self, u: torch.Tensor, cache) -> torch.Tensor:
        angle, h, k_state, v_state = cache
        pieces = self._inputs(self.in_proj(u[:, 0]))
        k_prev = k_state[:, 0].clone()
        state = [angle, h, k_prev, v_state]
        y = self._step(state, *pieces)
        k_state[:, 0].copy_(k_prev)
        return self._out(y)[:, None]


# ----------------------------------------------------------------------------- Gated DeltaNet

class RefGatedDeltaNet(nn.Module):
    """Gated DeltaNet mixer, the delta rule sequential over time (fla `naive_recurrent_gated_delta_rule`);
    parameters in_proj, conv1d, A_log, dt_bias, norm, out_proj (`models.torch_layers.GatedDeltaNetLayer`).

    in_proj -> [q, k, v, z, b, a]; causal depthwise conv + silu over q, k, v; q, k L2-normed per key
    head and shared by n_v_heads / n_k_heads value heads; g = -exp(A_log) softplus(a + dt_bias),
    beta = sigmoid(b); S = e^g S; S += k (beta (v - S^T k))^T; o = S^T q / sqrt(Dk); RMSNorm over Dv
    times silu(z); out_proj. The cache is (conv (B, conv_dim, d_conv), S (B, Hv, Dk, Dv)).
    """

    def __init__(self, spec: GatedDeltaNetSpec, device=None, dtype=None):
        super().__init__()
        self.spec = spec
        kw = {"device": device, "dtype": dtype}
        self.in_proj = nn.Linear(spec.d_model, spec.d_in_proj, bias=False, **kw)
        self.conv1d = nn.Conv1d(spec.conv_dim, spec.conv_dim, spec.d_conv, groups=spec.conv_dim,
                                bias=spec.conv_bias, padding=spec.d_conv - 1, **kw)
        self.A_log = nn.Parameter(torch.log(torch.linspace(1.0, 16.0, spec.n_v_heads, **kw)))
        self.dt_bias = nn.Parameter(torch.linspace(-4.0, -2.0, spec.n_v_heads, **kw))
        self.norm = nn.Module()
        self.norm.weight = nn.Parameter(torch.ones(spec.head_v_dim, **kw))
        self.out_proj = nn.Linear(spec.value_dim, spec.d_model, bias=False, **kw)

    def _split(self, zx: torch.Tensor):
        s = self.spec
        gate = s.value_dim if s.output_gate else 0
        return torch.split(zx, [s.conv_dim, gate, s.n_v_heads, s.n_v_heads], dim=-1)  # xbc, z, b, a

    def _heads(self, xbc: torch.Tensor):
        s = self.spec
        q, k, v = torch.split(xbc, [s.key_dim, s.key_dim, s.value_dim], dim=-1)
        rep = s.n_v_heads // s.n_k_heads
        q = F.normalize(q.unflatten(-1, (s.n_k_heads, s.head_k_dim)), dim=-1, eps=1e-6).repeat_interleave(rep, -2)
        k = F.normalize(k.unflatten(-1, (s.n_k_heads, s.head_k_dim)), dim=-1, eps=1e-6).repeat_interleave(rep, -2)
        return q * s.head_k_dim ** -0.5, k, v.unflatten(-1, (s.n_v_heads, s.head_v_dim))

    def _gates(self, b: torch.Tensor, a: torch.Tensor):
        return -torch.exp(self.A_log) * F.softplus(a + self.dt_bias), torch.sigmoid(b)

    @staticmethod
    def _step(state: torch.Tensor, q, k, v, g, beta) -> torch.Tensor:
        """Updates `state` (B, Hv, Dk, Dv) in place for one token; returns o (B, Hv, Dv)."""
        state.mul_(torch.exp(g)[..., None, None])
        delta = beta[..., None] * (v - torch.einsum("bhkv,bhk->bhv", state, k))
        state.add_(torch.einsum("bhk,bhv->bhkv", k, delta))
        return torch.einsum("bhkv,bhk->bhv", state, q)

    def _out(self, o: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        s = self.spec
        o = _rms(o, self.norm.weight)
        if s.output_gate:
            o = o * F.silu(z.unflatten(-1, (s.n_v_heads, s.head_v_dim)))
        return self.out_proj(o.flatten(-2))

    def forward_with_cache(self, u: torch.Tensor):
        s = self.spec
        xbc, z, b, a = self._split(self.in_proj(u))
        conv_state = _conv_state_after(xbc, s.d_conv)
        q, k, v = self._heads(F.silu(_causal_depthwise_conv(xbc, self.conv1d.weight, self.conv1d.bias)))
        g, beta = self._gates(b, a)
        state = u.new_zeros(u.shape[0], s.n_v_heads, s.head_k_dim, s.head_v_dim)
        o = torch.stack([self._step(state, q[:, t], k[:, t], v[:, t], g[:, t], beta[:, t])
                         for t in range(u.shape[1])], dim=1)
        return self._out(o, z), (conv_state, state)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.forward_with_cache(u)[0]

    def allocate_cache(self, batch: int, context: int, dtype=None):
        s = self.spec
        dtype = dtype or self.in_proj.weight.dtype
        dev = self.in_proj.weight.device
        return (torch.zeros(batch, s.conv_dim, s.d_conv, device=dev, dtype=dtype),
                torch.zeros(batch, s.n_v_heads, s.head_k_dim, s.head_v_dim, device=dev, dtype=dtype))

    def decode(self, u: torch.Tensor, cache) -> torch.Tensor:
        conv_state, state = cache
        xbc, z, b, a = self._split(self.in_proj(u[:, 0]))
        q, k, v = self._heads(F.silu(_conv_step(conv_state, xbc, self.conv1d.weight, self.conv1d.bias)))
        g, beta = self._gates(b, a)
        return self._out(self._step(state, q, k, v, g, beta), z)[:, None]


# ----------------------------------------------------------------------------- attention, MLP

def head_rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm over the last (head_dim) axis, written out (Qwen3's q_norm / k_norm, `Qwen3RMSNorm`)."""
    return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps) * weight


def attention_projections(module: nn.Module, spec: AttentionSpec, device=None, dtype=None) -> None:
    """`wqkv` (q/k/v biases when the spec has them), `out_proj` (a bias only with `bias`) and, with
    `qk_norm`, the q and k norms' head_dim weights `q_norm.weight`, `k_norm.weight`: the parameters
    of the reference and of the real attention layer alike."""
    kw = {"device": device, "dtype": dtype}
    module.wqkv = nn.Linear(spec.d_model, spec.qkv_dim, bias=spec.has_qkv_bias, **kw)
    module.out_proj = nn.Linear(spec.q_dim, spec.d_model, bias=spec.bias, **kw)
    if spec.qk_norm:
        module.q_norm, module.k_norm = nn.Module(), nn.Module()
        module.q_norm.weight = nn.Parameter(torch.ones(spec.head_dim, **kw))
        module.k_norm.weight = nn.Parameter(torch.ones(spec.head_dim, **kw))


class RefAttention(nn.Module):
    """Causal attention, GQA by repeating K/V heads, explicit softmax; parameters `wqkv`, `out_proj`
    (and `q_norm`, `k_norm` with qk_norm: applied per head before RoPE, as `Qwen3Attention` does).

    The decode cache holds K and V for `context` earlier tokens plus one slot for the new token:
    (k, v) of shape (B, n_kv_heads, context + 1, head_dim).
    """

    def __init__(self, spec: AttentionSpec, device=None, dtype=None):
        super().__init__()
        self.spec = spec
        attention_projections(self, spec, device, dtype)

    def _qkv(self, u: torch.Tensor, positions: torch.Tensor):
        s = self.spec
        q, k, v = torch.split(self.wqkv(u), [s.q_dim, s.kv_dim, s.kv_dim], dim=-1)
        q = q.unflatten(-1, (s.n_heads, s.head_dim))
        k = k.unflatten(-1, (s.n_kv_heads, s.head_dim))
        v = v.unflatten(-1, (s.n_kv_heads, s.head_dim))
        if s.qk_norm:
            q = head_rms_norm(q, self.q_norm.weight, s.norm_eps)
            k = head_rms_norm(k, self.k_norm.weight, s.norm_eps)
        cos, sin = rope_tables(s, positions, q.dtype)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v  # (B, L, heads, hd)

    def _attend(self, q, k, v, causal: bool) -> torch.Tensor:
        """q (B, Lq, H, hd), k/v (B, Lk, Hkv, hd) -> (B, Lq, H*hd); query i sits at Lk - Lq + i."""
        s = self.spec
        rep = s.n_heads // s.n_kv_heads
        k, v = k.repeat_interleave(rep, dim=2), v.repeat_interleave(rep, dim=2)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(s.head_dim)
        if causal:
            lq, lk = q.shape[1], k.shape[1]
            mask = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril(lk - lq)
            scores = scores.masked_fill(~mask, float("-inf"))
        out = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v)
        return out.flatten(-2)

    def forward_with_cache(self, u: torch.Tensor):
        positions = torch.arange(u.shape[1], device=u.device)
        q, k, v = self._qkv(u, positions)
        out = self.out_proj(self._attend(q, k, v, causal=True))
        kc, vc = self.allocate_cache(u.shape[0], u.shape[1], dtype=u.dtype)
        kc[:, :, : u.shape[1]] = k.transpose(1, 2)
        vc[:, :, : u.shape[1]] = v.transpose(1, 2)
        return out, (kc, vc)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.forward_with_cache(u)[0]

    def allocate_cache(self, batch: int, context: int, dtype=None):
        s = self.spec
        dtype = dtype or self.wqkv.weight.dtype
        shape = (batch, s.n_kv_heads, context + 1, s.head_dim)
        dev = self.wqkv.weight.device
        return (torch.zeros(shape, device=dev, dtype=dtype), torch.zeros(shape, device=dev, dtype=dtype))

    def decode(self, u: torch.Tensor, cache) -> torch.Tensor:
        kc, vc = cache
        context = kc.shape[2] - 1
        q, k, v = self._qkv(u, torch.tensor([context], device=u.device))
        kc[:, :, context] = k[:, 0]
        vc[:, :, context] = v[:, 0]
        return self.out_proj(self._attend(q, kc.transpose(1, 2), vc.transpose(1, 2), causal=False))


class RefMLP(nn.Module):
    """fc1 -> activation (gated: act(first half) * second half) -> fc2; parameters `fc1`, `fc2`."""

    def __init__(self, spec: MLPSpec, device=None, dtype=None):
        super().__init__()
        self.spec = spec
        self.fc1 = nn.Linear(spec.d_model, spec.fc1_out, bias=spec.bias, device=device, dtype=dtype)
        self.fc2 = nn.Linear(spec.ffn_hidden, spec.d_model, bias=spec.bias, device=device, dtype=dtype)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        h = self.fc1(u)
        if self.spec.gated:
            gate, up = h.chunk(2, dim=-1)
            h = activation(self.spec.activation, gate) * up
        else:
            h = activation(self.spec.activation, h)
        return self.fc2(h)

    def forward_with_cache(self, u: torch.Tensor):
        return self.forward(u), ()

    def allocate_cache(self, batch: int, context: int, dtype=None):
        return ()

    def decode(self, u: torch.Tensor, cache) -> torch.Tensor:
        return self.forward(u)


REFERENCE_LAYERS = {"mamba": RefMamba, "mamba2": RefMamba2, "mamba3": RefMamba3, "gdn": RefGatedDeltaNet,
                    "attention": RefAttention, "mlp": RefMLP}


def build_reference_layer(spec: MixerSpec, device=None, dtype=None) -> nn.Module:
    """The reference module for a mixer spec (any dtype; float64 for checks)."""
    return REFERENCE_LAYERS[spec.kind](spec, device=device, dtype=dtype)
