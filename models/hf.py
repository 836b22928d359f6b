"""A Hugging Face `config.json` as a ModelSpec (torch-free, no transformers needed).

Each supported architecture reads the keys its transformers configuration class defines, with that
class's defaults for keys the file leaves out (transformers `models/<family>/configuration_*.py`;
the modeling files say which ones shape the layers):

- `MambaForCausalLM` (Mamba-1, `MambaConfig`/`MambaMixer`): hidden_size, state_size, expand,
  conv_kernel, time_step_rank ("auto" = ceil(hidden_size / 16)), use_bias, use_conv_bias, tied.
- `Mamba2ForCausalLM` (`Mamba2Config`/`Mamba2Mixer`): num_heads x head_dim = expand x hidden_size,
  n_groups, state_size, chunk_size, conv_kernel, rms_norm (the gated norm), biases; untied.
- `NemotronHForCausalLM` (`NemotronHConfig`): `hybrid_override_pattern` (M Mamba-2, * attention,
  - MLP; E is a mixture-of-experts block and refused) or `layers_block_type`; Mamba-2 from
  mamba_num_heads, mamba_head_dim, ssm_state_size, n_groups; GQA attention with *no* position
  embedding (`NemotronHAttention.forward` applies no rotary embedding); squared-ReLU MLP (relu2).
- `LlamaForCausalLM`, `MistralForCausalLM`, `Qwen2ForCausalLM`, `Qwen3ForCausalLM`: GQA with RoPE on
  the whole head (rope_theta), SwiGLU MLP (hidden_act silu, gate and up as one fused fc1), RMSNorm,
  tied or untied embeddings; Qwen2 adds q/k/v biases (none on o_proj), Qwen3 per-head q/k RMSNorm.

What the spec cannot represent is refused with one line naming it: mixture-of-experts, parallel
attention + SSM heads, shared blocks, sliding-window attention in use, other activations, unknown
architectures. RoPE scaling (`rope_scaling`/`rope_parameters` types) changes the rotary frequencies,
not the work or the shapes, and is accepted.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from models.specs import AttentionSpec, Mamba2Spec, MambaSpec, MLPSpec, ModelSpec, SpecError

SUPPORTED = ("MambaForCausalLM", "Mamba2ForCausalLM", "NemotronHForCausalLM", "LlamaForCausalLM",
             "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")
MODEL_TYPES = {"mamba": "MambaForCausalLM", "mamba2": "Mamba2ForCausalLM", "nemotron_h": "NemotronHForCausalLM",
               "llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
               "qwen3": "Qwen3ForCausalLM"}
# Architectures known to need what a ModelSpec has no way to say.
REFUSED = {
    "MixtralForCausalLM": "mixture-of-experts", "Qwen2MoeForCausalLM": "mixture-of-experts",
    "Qwen3MoeForCausalLM": "mixture-of-experts", "JambaForCausalLM": "mixture-of-experts",
    "DeepseekV2ForCausalLM": "mixture-of-experts", "DeepseekV3ForCausalLM": "mixture-of-experts",
    "GraniteMoeHybridForCausalLM": "mixture-of-experts", "FalconH1ForCausalLM": "parallel attention + SSM heads",
    "HymbaForCausalLM": "parallel attention + SSM heads", "ZambaForCausalLM": "shared blocks",
    "Zamba2ForCausalLM": "shared blocks", "Gemma2ForCausalLM": "sliding-window attention",
    "Gemma3ForCausalLM": "sliding-window attention",
}
NEMOTRON_LETTERS = {"M": "M", "*": "*", "-": "-"}
NEMOTRON_BLOCKS = {"mamba": "M", "linear_attention": "M", "attention": "*", "full_attention": "*", "mlp": "-",
                   "moe": "E"}
_MISSING = object()


class HFConfig:
    """The config's keys with their types checked as they are read (one-line SpecError otherwise)."""

    def __init__(self, data: dict, where: str):
        self.data, self.where = data, where

    def get(self, key: str, kind: str, default=_MISSING):
        value = self.data.get(key, default)
        if value is _MISSING:
            raise SpecError(f"{self.where}: missing key {key!r}")
        if value is None and default is None:
            return None
        ok = {"int": isinstance(value, int) and not isinstance(value, bool),
              "float": isinstance(value, (int, float)) and not isinstance(value, bool),
              "bool": isinstance(value, bool), "str": isinstance(value, str),
              "list": isinstance(value, list)}[kind]
        if not ok:
            raise SpecError(f"{self.where}: {key} must be {_KIND_WORDS[kind]}, got {value!r}")
        return float(value) if kind == "float" else value

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None


_KIND_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
               "list": "a list"}


def config_path(path: Path) -> Path:
    """The config.json itself: `path`, or `path/config.json` for a model directory."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise SpecError(f"Hugging Face config not found: {path}")
    return path


def read_config(path: Path) -> tuple[Path, dict]:
    path = config_path(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text file") from None
    return path, parse_config(text, str(path))


def parse_config(text: str | bytes, where: str) -> dict:
    """The JSON object of a config (one-line SpecError if it is not JSON or not a model config)."""
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"{where}: not valid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or not ("architectures" in data or "model_type" in data):
        raise SpecError(f"{where}: not a Hugging Face model config (no architectures or model_type)")
    return data


def architecture(data: dict, where: str) -> str:
    archs = data.get("architectures")
    if archs is not None:
        if not isinstance(archs, list) or not archs or not all(isinstance(a, str) for a in archs):
            raise SpecError(f"{where}: architectures must be a list of names, got {archs!r}")
        return archs[0]
    model_type = data.get("model_type")
    if not isinstance(model_type, str):
        raise SpecError(f"{where}: model_type must be a string, got {model_type!r}")
    if model_type not in MODEL_TYPES:
        raise SpecError(f"{where}: unsupported model_type {model_type!r} (supported: {', '.join(MODEL_TYPES)})")
    return MODEL_TYPES[model_type]


def load_hf_config(path: Path, name: str | None = None) -> ModelSpec:
    """The ModelSpec a config.json (or a directory holding one) describes, named after its directory."""
    path, data = read_config(path)
    model_name = name or path.resolve().parent.name
    if not model_name:
        raise SpecError(f"{path}: cannot name the model after its directory: give --name")
    return spec_from_config(data, model_name, str(path))


def spec_from_config(data: dict, name: str, where: str) -> ModelSpec:
    """The ModelSpec of a parsed config (`where` names it in messages and becomes the spec's source)."""
    arch = architecture(data, where)
    if arch in REFUSED:
        raise SpecError(f"{where}: {arch} needs {REFUSED[arch]}, which perfbench's model spec cannot represent")
    if arch not in SUPPORTED:
        raise SpecError(f"{where}: unsupported architecture {arch!r} (supported: {', '.join(SUPPORTED)})")
    cfg = HFConfig(data, where)
    build = {"MambaForCausalLM": _mamba, "Mamba2ForCausalLM": _mamba2, "NemotronHForCausalLM": _nemotron_h}
    fields = build.get(arch, _dense)(cfg, arch)
    try:
        return ModelSpec(name=name, description=f"{arch} (Hugging Face config)", source=where, **fields)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{where}: {str(exc).splitlines()[0]}") from None


def _mamba(cfg: HFConfig, arch: str) -> dict:
    """transformers MambaConfig defaults; MambaMixer: in/out_proj bias use_bias, dt_proj with bias."""
    d = cfg.get("hidden_size", "int", 768)
    rank = cfg.data.get("time_step_rank", "auto")
    rank = math.ceil(d / 16) if rank == "auto" else cfg.get("time_step_rank", "int")
    expand = cfg.get("expand", "int", 2)
    mamba = MambaSpec(d_model=d, d_state=cfg.get("state_size", "int", 16), d_conv=cfg.get("conv_kernel", "int", 4),
                      expand=expand, dt_rank=rank, conv_bias=cfg.get("use_conv_bias", "bool", True),
                      bias=cfg.get("use_bias", "bool", False))
    return {"d_model": d, "vocab_size": cfg.get("vocab_size", "int", 50280),
            "pattern": "m" * cfg.get("num_hidden_layers", "int", 32), "norm": "rmsnorm", "mamba": mamba,
            "tie_embeddings": cfg.get("tie_word_embeddings", "bool", True), **_seqlen(cfg, 4096)}


def _mamba2_mixer(cfg: HFConfig, d: int, heads_key: str, head_dim_key: str, state_key: str, defaults: dict,
                  bias_key: str) -> Mamba2Spec:
    heads = cfg.get(heads_key, "int", defaults["heads"])
    head_dim = cfg.get(head_dim_key, "int", defaults["head_dim"])
    d_inner = heads * head_dim
    if d_inner % d:
        raise SpecError(f"{cfg.where}: Mamba-2 inner width {heads} x {head_dim} = {d_inner} is not a multiple of "
                        f"hidden_size {d} (the spec has an integer expand)")
    if cfg.data.get("norm_before_gate", False) is True:
        raise SpecError(f"{cfg.where}: norm_before_gate = true (the spec's Mamba-2 gates before its norm)")
    act = cfg.get("mamba_hidden_act" if "mamba_hidden_act" in cfg.data else "hidden_act", "str", "silu")
    if act not in ("silu", "swish"):
        raise SpecError(f"{cfg.where}: Mamba-2 activation {act!r} (the spec's Mamba-2 uses silu)")
    return Mamba2Spec(d_model=d, d_state=cfg.get(state_key, "int", 128), d_conv=cfg.get("conv_kernel", "int", 4),
                      expand=d_inner // d, headdim=head_dim, ngroups=cfg.get("n_groups", "int", defaults["groups"]),
                      chunk_size=cfg.get("chunk_size", "int", defaults["chunk"]),
                      conv_bias=cfg.get("use_conv_bias", "bool", True), bias=cfg.get(bias_key, "bool", False),
                      rmsnorm=cfg.get("rms_norm", "bool", True))


def _mamba2(cfg: HFConfig, arch: str) -> dict:
    """transformers Mamba2Config defaults (num_heads 128, head_dim 64, n_groups 8, chunk 256)."""
    d = cfg.get("hidden_size", "int", 4096)
    mixer = _mamba2_mixer(cfg, d, "num_heads", "head_dim", "state_size",
                          {"heads": 128, "head_dim": 64, "groups": 8, "chunk": 256}, "use_bias")
    expand = cfg.get("expand", "int", 2)
    if mixer.expand != expand:
        raise SpecError(f"{cfg.where}: num_heads x head_dim = {mixer.d_inner} but expand x hidden_size = "
                        f"{expand * d} (Mamba2Mixer needs them equal)")
    return {"d_model": d, "vocab_size": cfg.get("vocab_size", "int", 32768),
            "pattern": "M" * cfg.get("num_hidden_layers", "int", 64), "norm": "rmsnorm", "mamba2": mixer,
            "tie_embeddings": cfg.get("tie_word_embeddings", "bool", False), **_seqlen(cfg, 4096)}


def _nemotron_pattern(cfg: HFConfig) -> str:
    if cfg.has("hybrid_override_pattern"):
        pattern = cfg.get("hybrid_override_pattern", "str")
    elif cfg.has("layers_block_type") or cfg.has("layer_types"):
        key = "layers_block_type" if cfg.has("layers_block_type") else "layer_types"
        blocks = cfg.get(key, "list")
        unknown = sorted({str(b) for b in blocks} - set(NEMOTRON_BLOCKS))
        if unknown:
            raise SpecError(f"{cfg.where}: unknown {key} entries {unknown} ({', '.join(NEMOTRON_BLOCKS)})")
        pattern = "".join(NEMOTRON_BLOCKS[b] for b in blocks)
    else:
        raise SpecError(f"{cfg.where}: NemotronH config without hybrid_override_pattern or layers_block_type")
    if "E" in pattern:
        raise SpecError(f"{cfg.where}: the pattern has E (mixture-of-experts) blocks, which perfbench's model "
                        "spec cannot represent")
    unknown = sorted(set(pattern) - set(NEMOTRON_LETTERS))
    if unknown or not pattern:
        raise SpecError(f"{cfg.where}: hybrid_override_pattern letters {unknown or 'none'} (M, *, -)")
    return pattern


def _nemotron_h(cfg: HFConfig, arch: str) -> dict:
    """transformers NemotronHConfig defaults; attention without RoPE, relu2 MLP up -> down."""
    d = cfg.get("hidden_size", "int", 4096)
    pattern = _nemotron_pattern(cfg)
    _no_sliding_window(cfg, "sliding_window", enabled=cfg.has("sliding_window"))
    act = cfg.get("mlp_hidden_act", "str", "relu2")
    if act != "relu2":
        raise SpecError(f"{cfg.where}: mlp_hidden_act {act!r} (NemotronH's MLP is relu2: squared ReLU)")
    heads = cfg.get("num_attention_heads", "int", 32)
    kv = cfg.get("num_key_value_heads", "int", 8) if cfg.has("num_key_value_heads") else heads
    attention = AttentionSpec(d_model=d, n_heads=heads, n_kv_heads=kv, head_dim=cfg.get("head_dim", "int", 128),
                              rotary_fraction=0.0, bias=cfg.get("attention_bias", "bool", False))
    mlp = MLPSpec(d_model=d, ffn_hidden=cfg.get("intermediate_size", "int", 21504), activation="squared_relu",
                  bias=cfg.get("mlp_bias", "bool", False))
    mamba2 = _mamba2_mixer(cfg, d, "mamba_num_heads", "mamba_head_dim", "ssm_state_size",
                           {"heads": 128, "head_dim": 64, "groups": 8, "chunk": 128}, "use_bias")
    return {"d_model": d, "vocab_size": cfg.get("vocab_size", "int", 131072), "pattern": pattern,
            "norm": "rmsnorm", "mamba2": mamba2, "attention": attention, "mlp": mlp,
            "tie_embeddings": cfg.get("tie_word_embeddings", "bool", False), **_seqlen(cfg, 4096)}


# Per dense family: transformers config defaults that differ between them, and the features on.
DENSE = {
    "LlamaForCausalLM": {"vocab": 32000, "ffn": 11008, "kv_default": None, "head_dim": None, "eps": 1e-6,
                         "seqlen": 2048, "qkv_bias": None, "qk_norm": False, "window": None},
    "MistralForCausalLM": {"vocab": 32000, "ffn": 14336, "kv_default": 8, "head_dim": None, "eps": 1e-6,
                           "seqlen": 4096 * 32, "qkv_bias": False, "qk_norm": False, "window": 4096},
    "Qwen2ForCausalLM": {"vocab": 151936, "ffn": 22016, "kv_default": 32, "head_dim": None, "eps": 1e-6,
                         "seqlen": 32768, "qkv_bias": True, "qk_norm": False, "window": "use_sliding_window"},
    "Qwen3ForCausalLM": {"vocab": 151936, "ffn": 22016, "kv_default": 32, "head_dim": 128, "eps": 1e-6,
                         "seqlen": 32768, "qkv_bias": None, "qk_norm": True, "window": "use_sliding_window"},
}


def _rope_theta(cfg: HFConfig) -> float:
    """rope_theta, or rope_parameters["rope_theta"] (transformers >= 4.57 configs); default 10000."""
    params = cfg.data.get("rope_parameters")
    if isinstance(params, dict) and "rope_theta" in params:
        return HFConfig(params, f"{cfg.where} rope_parameters").get("rope_theta", "float")
    return cfg.get("rope_theta", "float", 10000.0)


def _no_sliding_window(cfg: HFConfig, key: str, enabled: bool) -> None:
    if enabled and cfg.data.get(key) is not None:
        window = cfg.get(key, "int")
        limit = cfg.data.get("max_position_embeddings")
        if not (isinstance(limit, int) and window >= limit):
            raise SpecError(f"{cfg.where}: sliding-window attention ({key} = {window}), which perfbench's model "
                            "spec cannot represent")


def _dense(cfg: HFConfig, arch: str) -> dict:
    """Llama, Mistral, Qwen2, Qwen3: transformers' defaults per family (DENSE)."""
    family = DENSE[arch]
    d = cfg.get("hidden_size", "int", 4096)
    heads = cfg.get("num_attention_heads", "int", 32)
    kv_default = family["kv_default"] or heads
    kv = cfg.get("num_key_value_heads", "int", kv_default) if cfg.has("num_key_value_heads") else kv_default
    head_dim = cfg.get("head_dim", "int", None) if cfg.has("head_dim") else family["head_dim"]
    if head_dim is None:
        if d % heads:
            raise SpecError(f"{cfg.where}: hidden_size {d} is not a multiple of num_attention_heads {heads}")
        head_dim = d // heads
    window = family["window"]
    if window == "use_sliding_window":
        _no_sliding_window(cfg, "sliding_window", enabled=cfg.get("use_sliding_window", "bool", False))
    elif window is not None:  # Mistral: a window unless the file sets it to null
        if "sliding_window" not in cfg.data:
            cfg = HFConfig({**cfg.data, "sliding_window": window}, cfg.where)
        _no_sliding_window(cfg, "sliding_window", enabled=True)
    act = cfg.get("hidden_act", "str", "silu")
    if act not in ("silu", "swish"):
        raise SpecError(f"{cfg.where}: hidden_act {act!r} (the dense families' gated MLP is SwiGLU: silu)")
    if cfg.get("mlp_bias", "bool", False):
        raise SpecError(f"{cfg.where}: mlp_bias = true (MLP biases are not modelled for {arch})")
    attention_bias = cfg.get("attention_bias", "bool", False)
    qkv_bias = family["qkv_bias"] if family["qkv_bias"] is not None else attention_bias
    both = attention_bias and family["qkv_bias"] is None  # Llama / Qwen3: attention_bias covers o_proj too
    attention = AttentionSpec(d_model=d, n_heads=heads, n_kv_heads=kv, head_dim=head_dim, rotary_fraction=1.0,
                              rope_base=_rope_theta(cfg), bias=both, qkv_bias=qkv_bias and not both,
                              qk_norm=family["qk_norm"],
                              **({"norm_eps": cfg.get("rms_norm_eps", "float", family["eps"])} if family["qk_norm"] else {}))
    mlp = MLPSpec(d_model=d, ffn_hidden=cfg.get("intermediate_size", "int", family["ffn"]), activation="silu",
                  gated=True)
    return {"d_model": d, "vocab_size": cfg.get("vocab_size", "int", family["vocab"]),
            "pattern": "*-" * cfg.get("num_hidden_layers", "int", 32), "norm": "rmsnorm", "attention": attention,
            "mlp": mlp, "tie_embeddings": cfg.get("tie_word_embeddings", "bool", False),
            **_seqlen(cfg, family["seqlen"])}


def _seqlen(cfg: HFConfig, default: int) -> dict:
    return {"max_seqlen": cfg.get("max_position_embeddings", "int", default)}
