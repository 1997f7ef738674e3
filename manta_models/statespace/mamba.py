"""A Mamba (selective state space) stack with a parallel forward and a recurrent ``step``.

Laid out like state-spaces/mamba ``mamba_simple.py``: the same projections (in_proj, a depthwise
causal conv1d, x_proj → dt/B/C, dt_proj, A_log, D, out_proj) and the state held as explicit
tensors (conv state, SSM state) that a stream actor can checkpoint. Parameter names match
transformers' ``MambaModel`` (layers.N.norm, layers.N.mixer.*, norm_f), so the same weights load
into that independent implementation for cross-checks.

On CUDA with ``mamba-ssm`` and ``causal-conv1d`` installed their fused kernels run; everywhere else
the pure torch path does, with the same numbers (checked in tests and on a lent GPU).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

try:  # fast kernels are a GPU extra: the pure torch path below is the reference
    from causal_conv1d import causal_conv1d_fn, causal_conv1d_update
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    from mamba_ssm.ops.triton.selective_state_update import selective_state_update
    HAVE_KERNELS = True
except ImportError:  # pragma: no cover - depends on the machine
    HAVE_KERNELS = False


@dataclass(frozen=True)
class MambaConfig:
    d_model: int = 64
    n_layers: int = 2
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int = 0  # 0: ceil(d_model / 16), as in mamba_simple
    eps: float = 1e-5

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def rank(self) -> int:
        return self.dt_rank or math.ceil(self.d_model / 16)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MambaState:
    """Everything a stream remembers: constant size whatever the stream's length."""

    conv: torch.Tensor  # (n_layers, batch, d_inner, d_conv): the last d_conv conv inputs
    ssm: torch.Tensor  # (n_layers, batch, d_inner, d_state)

    @classmethod
    def zeros(cls, cfg: MambaConfig, batch: int = 1, device=None, dtype=torch.float32) -> "MambaState":
        return cls(torch.zeros(cfg.n_layers, batch, cfg.d_inner, cfg.d_conv, device=device, dtype=dtype),
                   torch.zeros(cfg.n_layers, batch, cfg.d_inner, cfg.d_state, device=device, dtype=dtype))

    @property
    def nbytes(self) -> int:
        return self.conv.numel() * self.conv.element_size() + self.ssm.numel() * self.ssm.element_size()


def _use_kernels(x: torch.Tensor) -> bool:
    return HAVE_KERNELS and x.is_cuda


class MambaMixer(nn.Module):
    def __init__(self, cfg: MambaConfig):
        super().__init__()
        self.cfg = cfg
        d_inner, rank = cfg.d_inner, cfg.rank
        self.in_proj = nn.Linear(cfg.d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, cfg.d_conv, groups=d_inner, padding=cfg.d_conv - 1)
        self.x_proj = nn.Linear(d_inner, rank + 2 * cfg.d_state, bias=False)
        self.dt_proj = nn.Linear(rank, d_inner, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, cfg.d_state + 1, dtype=torch.float32)
                                            ).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, cfg.d_model, bias=False)
        self._init_dt()

    @torch.no_grad()
    def _init_dt(self, dt_min: float = 1e-3, dt_max: float = 0.1) -> None:
        # mamba_simple's initialisation: time steps log-uniform in [dt_min, dt_max] via the bias.
        std = self.cfg.rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(self.cfg.d_inner) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=1e-4)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    def _ssm_params(self, x: torch.Tensor):
        """x: (batch, length, d_inner) after the conv → dt (pre-softplus, no bias), B, C."""
        cfg = self.cfg
        dt, B, C = torch.split(self.x_proj(x), [cfg.rank, cfg.d_state, cfg.d_state], dim=-1)
        return dt @ self.dt_proj.weight.T, B, C

    def forward(self, hidden: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        """hidden: (batch, length, d_model). Returns the output and the state after the last step;
        ``state`` continues from an earlier call (the torch path; kernels start from zeros)."""
        cfg = self.cfg
        length = hidden.shape[1]
        x, z = self.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)  # (B, d_inner, L) each
        A = -torch.exp(self.A_log.float())
        if state is None and _use_kernels(x):
            conv_state = F.pad(x, (cfg.d_conv - length, 0))[..., -cfg.d_conv:]
            x = causal_conv1d_fn(x, self.conv1d.weight.squeeze(1), self.conv1d.bias, activation="silu")
            dt, B, C = self._ssm_params(x.transpose(1, 2))
            y, ssm_state = selective_scan_fn(
                x, dt.transpose(1, 2), A, B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous(),
                self.D.float(), z=z, delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
                return_last_state=True)
            return self.out_proj(y.transpose(1, 2)), (conv_state, ssm_state)

        prior = state[0][..., 1:] if state is not None else x.new_zeros(x.shape[0], cfg.d_inner, cfg.d_conv - 1)
        padded = torch.cat([prior, x], dim=-1)
        conv_state = padded[..., -cfg.d_conv:]
        x = F.silu(F.conv1d(padded, self.conv1d.weight, self.conv1d.bias, groups=cfg.d_inner))
        dt, B, C = self._ssm_params(x.transpose(1, 2))
        dt = F.softplus(dt + self.dt_proj.bias).transpose(1, 2)  # (B, d_inner, L)
        dA = torch.exp(dt.unsqueeze(-1) * A.unsqueeze(1))  # (B, d_inner, L, d_state)
        dBx = dt.unsqueeze(-1) * B.unsqueeze(1) * x.unsqueeze(-1)
        h = state[1] if state is not None else x.new_zeros(x.shape[0], cfg.d_inner, cfg.d_state)
        ys = []
        for t in range(length):  # the selective scan: short sequences, so a loop is fast enough
            h = dA[:, :, t] * h + dBx[:, :, t]
            ys.append((h * C[:, t].unsqueeze(1)).sum(-1))
        y = torch.stack(ys, dim=-1) + x * self.D.unsqueeze(-1)
        y = y * F.silu(z)
        return self.out_proj(y.transpose(1, 2)), (conv_state, h)

    def step(self, hidden: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor):
        """One time step. hidden: (batch, d_model). Returns output and new states (inputs untouched)."""
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # (B, d_inner)
        A = -torch.exp(self.A_log.float())
        if _use_kernels(x):
            conv_state, ssm_state = conv_state.clone(), ssm_state.clone()
            x = causal_conv1d_update(x, conv_state, self.conv1d.weight.squeeze(1), self.conv1d.bias, "silu")
            dt, B, C = self._ssm_params(x)
            y = selective_state_update(ssm_state, x, dt, A, B, C, self.D, z=z,
                                       dt_bias=self.dt_proj.bias, dt_softplus=True)
            return self.out_proj(y), conv_state, ssm_state

        conv_state = torch.cat([conv_state[..., 1:], x.unsqueeze(-1)], dim=-1)
        x = F.silu((conv_state * self.conv1d.weight.squeeze(1)).sum(-1) + self.conv1d.bias)
        dt, B, C = self._ssm_params(x)
        dt = F.softplus(dt + self.dt_proj.bias)
        ssm_state = ssm_state * torch.exp(dt.unsqueeze(-1) * A) + (dt * x).unsqueeze(-1) * B.unsqueeze(1)
        y = (ssm_state * C.unsqueeze(1)).sum(-1) + self.D * x
        return self.out_proj(y * F.silu(z)), conv_state, ssm_state


class MambaLayer(nn.Module):
    """Pre-norm residual block, as in mamba_simple's Block and transformers' MambaBlock."""

    def __init__(self, cfg: MambaConfig):
        super().__init__()
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.eps)
        self.mixer = MambaMixer(cfg)


class MambaStack(nn.Module):
    def __init__(self, cfg: MambaConfig):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(MambaLayer(cfg) for _ in range(cfg.n_layers))
        self.norm_f = nn.RMSNorm(cfg.d_model, eps=cfg.eps)

    def forward(self, x: torch.Tensor, state: MambaState | None = None) -> tuple[torch.Tensor, MambaState]:
        """x: (batch, length, d_model), all steps at once (training, or a backlog)."""
        convs, ssms = [], []
        for i, layer in enumerate(self.layers):
            prior = None if state is None else (state.conv[i], state.ssm[i])
            out, (conv, ssm) = layer.mixer(layer.norm(x), prior)
            x = x + out
            convs.append(conv)
            ssms.append(ssm)
        return self.norm_f(x), MambaState(torch.stack(convs), torch.stack(ssms))

    def step(self, x: torch.Tensor, state: MambaState) -> tuple[torch.Tensor, MambaState]:
        """x: (batch, d_model), one step; returns the output and the next state."""
        convs, ssms = [], []
        for i, layer in enumerate(self.layers):
            out, conv, ssm = layer.mixer.step(layer.norm(x), state.conv[i], state.ssm[i])
            x = x + out
            convs.append(conv)
            ssms.append(ssm)
        return self.norm_f(x), MambaState(torch.stack(convs), torch.stack(ssms))

    def initial_state(self, batch: int = 1) -> MambaState:
        p = next(self.parameters())
        return MambaState.zeros(self.cfg, batch, device=p.device, dtype=p.dtype)
