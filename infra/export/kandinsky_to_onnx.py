#!/usr/bin/env python3
"""Export Kandinsky 2.1 / 2.2 (diffusers weights) to the ONNX layout the Easel worker loads.

There is no public ONNX export of Kandinsky, so Easel ships this script. It is run by
a person on a machine that has torch + diffusers + transformers + onnx and either
internet access to the Hugging Face Hub or the weights in the local HF cache (or in
local directories passed as --prior-repo / --decoder-repo). See infra/export/README.md.

    python infra/export/kandinsky_to_onnx.py --version 2.1 --out models/kandinsky-2-1-onnx
    python infra/export/kandinsky_to_onnx.py --version 2.2 --out models/kandinsky-2-2-onnx \
        --device cuda --fp16

Output layout (shared/notes/kandinsky.md, section 8):

    <out>/
      model_index.json
      prior_tokenizer/              CLIPTokenizer.save_pretrained (vocab.json, merges.txt, ...)
      prior_text_encoder/model.onnx CLIPTextModelWithProjection: input_ids -> text_embeds, last_hidden_state
      prior_image_encoder/zero_image_embeds.json   image_encoder(zeros[1,3,S,S]).image_embeds[0]
                         /model.onnx (only with --export-image-encoder)
      prior_prior/model.onnx (+weights.pb), config.json, clip_stats.json {clip_mean, clip_std}
      prior_scheduler/scheduler_config.json         UnCLIPScheduler
      tokenizer/                    XLMRobertaTokenizerFast.save_pretrained (tokenizer.json, ...)   [2.1 only]
      text_encoder/model.onnx (+weights.pb), config.json   MultilingualCLIP                      [2.1 only]
      unet/model.onnx (+weights.pb), config.json
      movq_decoder/model.onnx, config.json
      scheduler/scheduler_config.json               DDIMScheduler (2.1) / DDPMScheduler (2.2)

ONNX signatures (B = batch, dynamic; D = prior embedding dim, 768 for 2.1 and 1280 for 2.2):

    prior_text_encoder  input_ids i64[B,77]                      -> text_embeds f32[B,D], last_hidden_state f32[B,77,H]
    text_encoder        input_ids i64[B,77], attention_mask i64[B,77]
                                                                 -> text_embeds f32[B,768], last_hidden_state f32[B,77,1024]
    prior_image_encoder pixel_values f32[B,3,224,224]            -> image_embeds f32[B,D]
    prior_prior         hidden_states f32[B,D], timestep f32[B], proj_embedding f32[B,D],
                        encoder_hidden_states f32[B,77,D], attention_mask bool[B,77]
                                                                 -> predicted_image_embedding f32[B,D]
    unet (2.1)          sample f32[B,4,h,w], timestep f32[B], encoder_hidden_states f32[B,77,1024],
                        text_embeds f32[B,768], image_embeds f32[B,768] -> out_sample f32[B,8,h,w]
    unet (2.2)          sample f32[B,4,h,w], timestep f32[B], image_embeds f32[B,1280] -> out_sample f32[B,8,h,w]
    movq_decoder        latent_sample f32[B,4,h,w]               -> sample f32[B,3,8h,8w]

All graph inputs and outputs are float32 (or int64/bool as listed) even with --fp16: the
wrappers cast floating inputs to the weights' dtype inside the graph and cast outputs back
to float32, so the worker sees one signature whatever precision the weights are in.

Notes on semantics (see the notes file for the reasoning):
  * prior_prior is PriorTransformer.forward only. post_process_latents (x*clip_std+clip_mean)
    is NOT in the graph; its parameters are written to prior_prior/clip_stats.json.
  * movq_decoder is movq.decode(z, force_not_quantize=True).sample. The config's
    scaling_factor (0.18215) is never applied by the Kandinsky pipelines.
  * The UNet's out_sample has 8 channels: 0-3 epsilon, 4-7 learned-range variance.

Conventions follow diffusers scripts/convert_stable_diffusion_checkpoint_to_onnx.py:
torch.onnx.export (TorchScript exporter), opset 17, dynamic axes for batch and spatial dims,
timestep as float [batch], output names out_sample / sample, and external data collated
into a single `weights.pb` next to model.onnx for any model whose weights exceed ~1.8 GB
(protobuf's hard limit is 2 GiB). Load such models by file path so onnxruntime finds
weights.pb.

Every written model is checked with onnx.checker (path based, so external data works),
its input/output names, element types and static dims are compared with the table above,
and, if the `onnxruntime` Python package is installed, it is run once on inputs of a
different batch (and spatial) size than the traced ones and compared with torch.

The module is importable without diffusers/transformers (they are imported lazily in
load_hf_components), which is what infra/export/check_wrappers.py relies on.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

SEQ_LEN = 77
DEFAULT_OPSET = 17
# protobuf cannot serialise a message over 2 GiB; leave room for the graph itself.
EXTERNAL_DATA_THRESHOLD_BYTES = int(1.8e9)
EXTERNAL_DATA_FILE = "weights.pb"

DEFAULT_REPOS = {
    "2.1": ("kandinsky-community/kandinsky-2-1-prior", "kandinsky-community/kandinsky-2-1"),
    "2.2": ("kandinsky-community/kandinsky-2-2-prior", "kandinsky-community/kandinsky-2-2-decoder"),
}

# The scheduler classes model_index.json names (notes section 8).
EXPECTED_SCHEDULERS = {
    "prior_scheduler": "UnCLIPScheduler",
    "scheduler:2.1": "DDIMScheduler",
    "scheduler:2.2": "DDPMScheduler",
}

ALL_COMPONENTS = (
    "prior_tokenizer",
    "prior_text_encoder",
    "prior_image_encoder",
    "prior_prior",
    "prior_scheduler",
    "tokenizer",
    "text_encoder",
    "unet",
    "movq_decoder",
    "scheduler",
)


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------


def cfg_get(config: Any, key: str, default: Any = None) -> Any:
    """Read a config value from a diffusers FrozenDict, a transformers config or a namespace."""
    if config is None:
        return default
    if isinstance(config, dict) and key in config:
        return config[key]
    return getattr(config, key, default)


def module_dtype(module: nn.Module) -> torch.dtype:
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def module_bytes(module: nn.Module) -> int:
    seen = set()
    total = 0
    for t in list(module.parameters()) + list(module.buffers()):
        if id(t) in seen:
            continue
        seen.add(id(t))
        total += t.numel() * t.element_size()
    return total


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000.0
    return f"{n:.1f} TB"


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def log(msg: str) -> None:
    print(msg, flush=True)


def set_eager_attention(model: Any) -> None:
    """Swap diffusers' SDPA attention processors for the classic matmul/softmax ones.

    AttnProcessor2_0 / AttnAddedKVProcessor2_0 call F.scaled_dot_product_attention, whose
    ONNX export needs torch >= 2.1; the classic processors export with any torch and
    compute the same thing. Done per module (VQModel has no set_default_attn_processor).
    No-op for modules without diffusers attention (e.g. the stand-ins of check_wrappers.py).
    """
    try:
        from diffusers.models.attention_processor import AttnAddedKVProcessor, AttnProcessor
    except ImportError:
        return
    swaps = {"AttnProcessor2_0": AttnProcessor, "AttnAddedKVProcessor2_0": AttnAddedKVProcessor}
    n = 0
    for m in model.modules():
        proc = getattr(m, "processor", None)
        if proc is None or not hasattr(m, "set_processor"):
            continue
        cls = swaps.get(type(proc).__name__)
        if cls is not None:
            m.set_processor(cls())
            n += 1
    if n:
        log(f"  using classic attention processors in {n} attention layer(s)")


# --------------------------------------------------------------------------------------
# export wrappers: fixed names, f32 I/O, no dicts / dataclasses / optional arguments
# --------------------------------------------------------------------------------------


class ClipTextEncoderWrapper(nn.Module):
    """CLIPTextModelWithProjection called the way KandinskyPriorPipeline calls it: no mask."""

    def __init__(self, text_encoder: nn.Module):
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids: torch.Tensor):
        out = self.text_encoder(input_ids=input_ids, return_dict=True)
        return out.text_embeds.float(), out.last_hidden_state.float()


class ClipImageEncoderWrapper(nn.Module):
    """CLIPVisionModelWithProjection -> image_embeds."""

    def __init__(self, image_encoder: nn.Module):
        super().__init__()
        self.image_encoder = image_encoder
        self.dtype = module_dtype(image_encoder)

    def forward(self, pixel_values: torch.Tensor):
        out = self.image_encoder(pixel_values=pixel_values.to(self.dtype), return_dict=True)
        return out.image_embeds.float()


class MultilingualClipWrapper(nn.Module):
    """diffusers' MultilingualCLIP returns a tuple (pooled projection, hidden states); name them."""

    def __init__(self, text_encoder: nn.Module):
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        text_embeds, last_hidden_state = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask)
        return text_embeds.float(), last_hidden_state.float()


class PriorWrapper(nn.Module):
    """PriorTransformer.forward with positional, always-present inputs.

    post_process_latents (x * clip_std + clip_mean) is deliberately not included.
    The timestep stays float32: diffusers computes the sinusoidal projection in float32
    and casts it to the weights' dtype itself.
    """

    def __init__(self, prior: nn.Module):
        super().__init__()
        self.prior = prior
        self.dtype = module_dtype(prior)

    def forward(self, hidden_states, timestep, proj_embedding, encoder_hidden_states, attention_mask):
        out = self.prior(
            hidden_states.to(self.dtype),
            timestep=timestep,
            proj_embedding=proj_embedding.to(self.dtype),
            encoder_hidden_states=encoder_hidden_states.to(self.dtype),
            attention_mask=attention_mask,
            return_dict=False,
        )[0]
        return out.float()


class UNet21Wrapper(nn.Module):
    """Kandinsky 2.1 UNet: flattens added_cond_kwargs={text_embeds, image_embeds}."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet
        self.dtype = module_dtype(unet)

    def forward(self, sample, timestep, encoder_hidden_states, text_embeds, image_embeds):
        out = self.unet(
            sample.to(self.dtype),
            timestep,
            encoder_hidden_states=encoder_hidden_states.to(self.dtype),
            added_cond_kwargs={"text_embeds": text_embeds.to(self.dtype), "image_embeds": image_embeds.to(self.dtype)},
            return_dict=False,
        )[0]
        return out.float()


class UNet22Wrapper(nn.Module):
    """Kandinsky 2.2 UNet: no text; encoder_hidden_states=None, added_cond_kwargs={image_embeds}."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet
        self.dtype = module_dtype(unet)

    def forward(self, sample, timestep, image_embeds):
        out = self.unet(
            sample.to(self.dtype),
            timestep,
            encoder_hidden_states=None,
            added_cond_kwargs={"image_embeds": image_embeds.to(self.dtype)},
            return_dict=False,
        )[0]
        return out.float()


class MoVQDecoderWrapper(nn.Module):
    """movq.decode(z, force_not_quantize=True).sample: post_quant_conv + spatially-normed decoder."""

    def __init__(self, movq: nn.Module):
        super().__init__()
        self.movq = movq
        self.dtype = module_dtype(movq)

    def forward(self, latent_sample):
        # return_dict=False gives (dec,) on older diffusers and (dec, commit_loss) on newer ones.
        out = self.movq.decode(latent_sample.to(self.dtype), force_not_quantize=True, return_dict=False)[0]
        return out.float()


# --------------------------------------------------------------------------------------
# expected signatures (checked against every written model)
# --------------------------------------------------------------------------------------

# ONNX TensorProto element types
FLOAT, INT64, BOOL = 1, 7, 9
_ELEM_NAMES = {1: "float32", 7: "int64", 9: "bool", 10: "float16"}


@dataclass
class TensorSpec:
    name: str
    elem_type: int
    dims: Tuple[Any, ...]  # int = static size, str = dynamic axis name


@dataclass
class ModelSpec:
    inputs: List[TensorSpec]
    outputs: List[TensorSpec]

    def dynamic_axes(self) -> Dict[str, Dict[int, str]]:
        axes: Dict[str, Dict[int, str]] = {}
        for t in self.inputs + self.outputs:
            d = {i: n for i, n in enumerate(t.dims) if isinstance(n, str)}
            if d:
                axes[t.name] = d
        return axes

    @property
    def input_names(self) -> List[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> List[str]:
        return [t.name for t in self.outputs]


def spec_clip_text(embed_dim: int, hidden_dim: int) -> ModelSpec:
    return ModelSpec(
        inputs=[TensorSpec("input_ids", INT64, ("batch", SEQ_LEN))],
        outputs=[
            TensorSpec("text_embeds", FLOAT, ("batch", embed_dim)),
            TensorSpec("last_hidden_state", FLOAT, ("batch", SEQ_LEN, hidden_dim)),
        ],
    )


def spec_clip_image(image_size: int, embed_dim: int) -> ModelSpec:
    return ModelSpec(
        inputs=[TensorSpec("pixel_values", FLOAT, ("batch", 3, image_size, image_size))],
        outputs=[TensorSpec("image_embeds", FLOAT, ("batch", embed_dim))],
    )


def spec_mclip(embed_dim: int, hidden_dim: int) -> ModelSpec:
    return ModelSpec(
        inputs=[
            TensorSpec("input_ids", INT64, ("batch", SEQ_LEN)),
            TensorSpec("attention_mask", INT64, ("batch", SEQ_LEN)),
        ],
        outputs=[
            TensorSpec("text_embeds", FLOAT, ("batch", embed_dim)),
            TensorSpec("last_hidden_state", FLOAT, ("batch", SEQ_LEN, hidden_dim)),
        ],
    )


def spec_prior(dim: int) -> ModelSpec:
    return ModelSpec(
        inputs=[
            TensorSpec("hidden_states", FLOAT, ("batch", dim)),
            TensorSpec("timestep", FLOAT, ("batch",)),
            TensorSpec("proj_embedding", FLOAT, ("batch", dim)),
            TensorSpec("encoder_hidden_states", FLOAT, ("batch", SEQ_LEN, dim)),
            TensorSpec("attention_mask", BOOL, ("batch", SEQ_LEN)),
        ],
        outputs=[TensorSpec("predicted_image_embedding", FLOAT, ("batch", dim))],
    )


def spec_unet21(in_ch: int, out_ch: int, hid_dim: int, text_dim: int, image_dim: int) -> ModelSpec:
    return ModelSpec(
        inputs=[
            TensorSpec("sample", FLOAT, ("batch", in_ch, "height", "width")),
            TensorSpec("timestep", FLOAT, ("batch",)),
            TensorSpec("encoder_hidden_states", FLOAT, ("batch", SEQ_LEN, hid_dim)),
            TensorSpec("text_embeds", FLOAT, ("batch", text_dim)),
            TensorSpec("image_embeds", FLOAT, ("batch", image_dim)),
        ],
        outputs=[TensorSpec("out_sample", FLOAT, ("batch", out_ch, "height", "width"))],
    )


def spec_unet22(in_ch: int, out_ch: int, image_dim: int) -> ModelSpec:
    return ModelSpec(
        inputs=[
            TensorSpec("sample", FLOAT, ("batch", in_ch, "height", "width")),
            TensorSpec("timestep", FLOAT, ("batch",)),
            TensorSpec("image_embeds", FLOAT, ("batch", image_dim)),
        ],
        outputs=[TensorSpec("out_sample", FLOAT, ("batch", out_ch, "height", "width"))],
    )


def spec_movq(latent_ch: int, out_ch: int = 3) -> ModelSpec:
    return ModelSpec(
        inputs=[TensorSpec("latent_sample", FLOAT, ("batch", latent_ch, "height", "width"))],
        outputs=[TensorSpec("sample", FLOAT, ("batch", out_ch, "sample_height", "sample_width"))],
    )


def check_signature(model_path: Path, spec: ModelSpec) -> List[str]:
    """Compare the saved graph's inputs/outputs with the spec. Returns a list of problems."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    problems: List[str] = []
    initializers = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in initializers]

    for kind, actual, expected in (("input", graph_inputs, spec.inputs), ("output", list(model.graph.output), spec.outputs)):
        names = [a.name for a in actual]
        if names != [e.name for e in expected]:
            problems.append(f"{kind} names {names} != expected {[e.name for e in expected]}")
            continue
        for a, e in zip(actual, expected):
            tt = a.type.tensor_type
            if tt.elem_type != e.elem_type:
                problems.append(
                    f"{kind} {e.name}: element type {_ELEM_NAMES.get(tt.elem_type, tt.elem_type)} != {_ELEM_NAMES[e.elem_type]}"
                )
            dims = list(tt.shape.dim)
            if len(dims) != len(e.dims):
                problems.append(f"{kind} {e.name}: rank {len(dims)} != {len(e.dims)}")
                continue
            for i, (d, ed) in enumerate(zip(dims, e.dims)):
                has_value = d.HasField("dim_value")
                if isinstance(ed, int):
                    if has_value and d.dim_value != ed:
                        problems.append(f"{kind} {e.name}: dim {i} is {d.dim_value}, expected {ed}")
                    elif not has_value:
                        problems.append(f"{kind} {e.name}: dim {i} is dynamic, expected static {ed}")
                else:
                    if has_value:
                        problems.append(f"{kind} {e.name}: dim {i} is static {d.dim_value}, expected dynamic '{ed}'")
    return problems


def describe_io(model_path: Path) -> str:
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}

    def fmt(v):
        tt = v.type.tensor_type
        dims = [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else "?") for d in tt.shape.dim]
        return f"{v.name} {_ELEM_NAMES.get(tt.elem_type, tt.elem_type)}{dims}"

    ins = ", ".join(fmt(i) for i in model.graph.input if i.name not in initializers)
    outs = ", ".join(fmt(o) for o in model.graph.output)
    return f"({ins}) -> ({outs})"


# --------------------------------------------------------------------------------------
# export + verification machinery
# --------------------------------------------------------------------------------------

OrtRunner = Callable[[Path, Dict[str, Any], Sequence[str], bool], Dict[str, Any]]


def python_ort_runner(device: str) -> Optional[OrtRunner]:
    """Return a runner using the onnxruntime Python package, or None if it isn't installed."""
    try:
        import onnxruntime as ort  # noqa: F401
    except ImportError:
        return None
    import onnxruntime as ort

    def run(model_path: Path, feeds: Dict[str, Any], output_names: Sequence[str], fp16: bool) -> Dict[str, Any]:
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        opts = ort.SessionOptions()
        sess = ort.InferenceSession(str(model_path), sess_options=opts, providers=providers)
        outs = sess.run(list(output_names), feeds)
        del sess
        return dict(zip(output_names, outs))

    return run


@dataclass
class ExportOptions:
    opset: int = DEFAULT_OPSET
    device: str = "cpu"
    fp16: bool = False
    external_data: str = "auto"  # auto | always | never
    external_threshold_bytes: int = EXTERNAL_DATA_THRESHOLD_BYTES
    ort_runner: Optional[OrtRunner] = None
    rtol: Optional[float] = None
    atol: Optional[float] = None

    @property
    def dtype(self) -> torch.dtype:
        return torch.float16 if self.fp16 else torch.float32

    def tolerances(self) -> Tuple[float, float]:
        rtol = self.rtol if self.rtol is not None else (2e-2 if self.fp16 else 1e-3)
        atol = self.atol if self.atol is not None else (1e-2 if self.fp16 else 1e-4)
        return rtol, atol


@dataclass
class ComponentResult:
    name: str
    path: Path
    external_data: bool
    checker: str = "not run"
    signature: str = "not run"
    ort: str = "not run"
    ok: bool = True
    notes: List[str] = field(default_factory=list)


def _torch_onnx_export(model, args, path: Path, spec: ModelSpec, opset: int) -> None:
    kwargs = dict(
        export_params=True,
        input_names=spec.input_names,
        output_names=spec.output_names,
        dynamic_axes=spec.dynamic_axes(),
        do_constant_folding=True,
        opset_version=opset,
    )
    params = inspect.signature(torch.onnx.export).parameters
    if "dynamo" in params:
        # torch >= 2.5 has a second (dynamo) exporter, default since 2.9; dynamic_axes and
        # these wrappers are written for the TorchScript exporter.
        kwargs["dynamo"] = False
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*[Cc]onstant folding.*")
        torch.onnx.export(model, args, str(path), **kwargs)


def _stamp_output_dims(proto, spec: ModelSpec) -> None:
    """Write the spec's static sizes / axis names into the graph outputs' declared shapes.

    The exporter sometimes leaves a static output dim symbolic (e.g. 'Castlast_hidden_state_dim_1'
    for the 77 of last_hidden_state); metadata only, the computation is unchanged.
    """
    by_name = {t.name: t for t in spec.outputs}
    for out in proto.graph.output:
        t = by_name.get(out.name)
        if t is None:
            continue
        dims = out.type.tensor_type.shape.dim
        if len(dims) != len(t.dims):
            continue  # check_signature reports it
        for d, want in zip(dims, t.dims):
            if isinstance(want, int) and not d.HasField("dim_value"):
                d.dim_value = want
            elif isinstance(want, str) and not d.HasField("dim_value"):
                d.dim_param = want


def _to_numpy(t: torch.Tensor):
    return t.detach().cpu().numpy()


def _compare(name: str, onnx_out, torch_out, rtol: float, atol: float) -> Tuple[bool, str]:
    import numpy as np

    onnx_out = np.asarray(onnx_out)
    if tuple(onnx_out.shape) != tuple(torch_out.shape):
        return False, f"{name}: shape {tuple(onnx_out.shape)} != torch {tuple(torch_out.shape)}"
    if not np.all(np.isfinite(onnx_out)):
        return False, f"{name}: non-finite values in ONNX output"
    ref = torch_out.astype(np.float64)
    err = float(np.max(np.abs(onnx_out.astype(np.float64) - ref))) if ref.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    bound = atol + rtol * scale
    ok = err <= bound
    return ok, f"{name}: max|onnx-torch|={err:.3g} (max|torch|={scale:.3g}, bound {bound:.3g}){'' if ok else ' FAIL'}"


@torch.no_grad()
def export_component(
    name: str,
    wrapper: nn.Module,
    trace_inputs: Tuple[torch.Tensor, ...],
    verify_inputs: Tuple[torch.Tensor, ...],
    spec: ModelSpec,
    out_dir: Path,
    opts: ExportOptions,
) -> ComponentResult:
    """Trace-export `wrapper` to out_dir/model.onnx (+ weights.pb if large), then verify it.

    The torch reference for verify_inputs (different batch / spatial size from the traced
    inputs, so dynamic axes are exercised) is computed before the torch module is released.
    The caller must drop its own references to the module for the memory to be freed.
    """
    import onnx

    t0 = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / "model.onnx"
    for stale in (model_path, out_dir / EXTERNAL_DATA_FILE):
        if stale.exists():
            stale.unlink()

    wrapper.eval()
    nbytes = module_bytes(wrapper)
    if opts.external_data == "always":
        use_external = True
    elif opts.external_data == "never":
        use_external = False
    else:
        use_external = nbytes > opts.external_threshold_bytes
    result = ComponentResult(name=name, path=model_path, external_data=use_external)
    log(f"[{name}] exporting ({human_bytes(nbytes)} of weights, {'external data' if use_external else 'single file'})")

    dev_trace = tuple(t.to(opts.device) for t in trace_inputs)
    dev_verify = tuple(t.to(opts.device) for t in verify_inputs)

    # torch reference on the verification inputs
    ref = wrapper(*dev_verify)
    if isinstance(ref, torch.Tensor):
        ref = (ref,)
    ref_np = {n: _to_numpy(r.float()) for n, r in zip(spec.output_names, ref)}
    del ref

    tmp_dir = out_dir.parent / f".tmp_export_{name}"
    if tmp_dir.exists():
        shutil.rmtree(tmp_dir)
    tmp_dir.mkdir(parents=True)
    try:
        tmp_path = tmp_dir / "model.onnx"
        _torch_onnx_export(wrapper, dev_trace, tmp_path, spec, opts.opset)
        del dev_trace, dev_verify
        free_memory()
        # Re-save: collates torch's one-file-per-tensor external data into weights.pb
        # (as diffusers' SD conversion script does), or writes a single self-contained file.
        proto = onnx.load(str(tmp_path))
        _stamp_output_dims(proto, spec)
        if use_external:
            onnx.save_model(
                proto,
                str(model_path),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=EXTERNAL_DATA_FILE,
                convert_attribute=False,
            )
        else:
            onnx.save_model(proto, str(model_path))
        del proto
        free_memory()
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    log(f"[{name}] exported in {time.time() - t0:.0f}s")

    # 1. onnx.checker, by path so external data and >2 GB models work
    try:
        onnx.checker.check_model(str(model_path), full_check=True)
        result.checker = "ok"
    except Exception as exc:
        result.checker = f"FAILED: {exc}"
        result.ok = False

    # 2. signature
    problems = check_signature(model_path, spec)
    if problems:
        result.signature = "FAILED: " + "; ".join(problems)
        result.ok = False
    else:
        result.signature = "ok " + describe_io(model_path)

    # 3. one onnxruntime run against torch
    if opts.ort_runner is None:
        result.ort = "skipped (onnxruntime not installed)"
    else:
        feeds = {n: _to_numpy(t) for n, t in zip(spec.input_names, verify_inputs)}
        try:
            outs = opts.ort_runner(model_path, feeds, spec.output_names, opts.fp16)
        except Exception as exc:
            if opts.fp16:
                result.ort = f"skipped (fp16 model could not run: {str(exc).splitlines()[0][:200]})"
            else:
                result.ort = f"FAILED to run: {exc}"
                result.ok = False
        else:
            rtol, atol = opts.tolerances()
            msgs = []
            all_ok = True
            for n in spec.output_names:
                ok, msg = _compare(n, outs[n], ref_np[n], rtol, atol)
                all_ok &= ok
                msgs.append(msg)
            shapes = ", ".join(f"{n}{list(t.shape)}" for n, t in feeds.items())
            result.ort = ("ok" if all_ok else "FAILED") + f" on ({shapes}): " + "; ".join(msgs)
            result.ok &= all_ok
    for line in (f"checker: {result.checker}", f"signature: {result.signature}", f"onnxruntime: {result.ort}"):
        log(f"[{name}]   {line}")
    return result


# --------------------------------------------------------------------------------------
# components: loaded lazily, one at a time, so peak memory stays around one model
# --------------------------------------------------------------------------------------


@dataclass
class ComponentLoaders:
    """Zero-argument callables returning the (fp32, CPU) diffusers/transformers objects.

    Each is called when needed and its result dropped afterwards. check_wrappers.py
    passes tiny stand-ins through the same interface.
    """

    version: str
    prior: Callable[[], Any]
    prior_text_encoder: Callable[[], Any]
    prior_tokenizer: Callable[[], Any]
    prior_image_encoder: Callable[[], Any]
    prior_scheduler: Callable[[], Any]
    unet: Callable[[], Any]
    movq: Callable[[], Any]
    scheduler: Callable[[], Any]
    text_encoder: Optional[Callable[[], Any]] = None  # 2.1 only
    tokenizer: Optional[Callable[[], Any]] = None  # 2.1 only


def load_hf_components(version: str, prior_repo: str, decoder_repo: str, local_files_only: bool = False) -> ComponentLoaders:
    """Loaders for the real weights (Hub ids or local diffusers-format directories)."""
    import diffusers
    import transformers
    from diffusers import DDIMScheduler, DDPMScheduler, PriorTransformer, UNet2DConditionModel, UnCLIPScheduler, VQModel
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer, CLIPVisionModelWithProjection

    log(f"torch {torch.__version__}, diffusers {diffusers.__version__}, transformers {transformers.__version__}")
    common = dict(local_files_only=local_files_only)

    def tf_model(cls, repo, subfolder):
        # eager attention exports everywhere; SDPA export depends on the torch version.
        try:
            return cls.from_pretrained(repo, subfolder=subfolder, torch_dtype=torch.float32, attn_implementation="eager", **common)
        except (TypeError, ValueError) as exc:
            if "attn_implementation" not in str(exc):
                raise
            return cls.from_pretrained(repo, subfolder=subfolder, torch_dtype=torch.float32, **common)

    def df_model(cls, repo, subfolder):
        return cls.from_pretrained(repo, subfolder=subfolder, torch_dtype=torch.float32, **common)

    def mclip():
        try:
            from diffusers.pipelines.kandinsky.text_encoder import MultilingualCLIP
        except ImportError:  # older layout
            from diffusers.pipelines.kandinsky import MultilingualCLIP
        return tf_model(MultilingualCLIP, decoder_repo, "text_encoder")

    def xlmr_tokenizer():
        from transformers import XLMRobertaTokenizerFast

        return XLMRobertaTokenizerFast.from_pretrained(decoder_repo, subfolder="tokenizer", **common)

    loaders = ComponentLoaders(
        version=version,
        prior=lambda: df_model(PriorTransformer, prior_repo, "prior"),
        prior_text_encoder=lambda: tf_model(CLIPTextModelWithProjection, prior_repo, "text_encoder"),
        prior_tokenizer=lambda: CLIPTokenizer.from_pretrained(prior_repo, subfolder="tokenizer", **common),
        prior_image_encoder=lambda: tf_model(CLIPVisionModelWithProjection, prior_repo, "image_encoder"),
        prior_scheduler=lambda: UnCLIPScheduler.from_pretrained(prior_repo, subfolder="scheduler", **common),
        unet=lambda: df_model(UNet2DConditionModel, decoder_repo, "unet"),
        movq=lambda: df_model(VQModel, decoder_repo, "movq"),
        scheduler=lambda: (DDIMScheduler if version == "2.1" else DDPMScheduler).from_pretrained(
            decoder_repo, subfolder="scheduler", **common
        ),
    )
    if version == "2.1":
        loaders.text_encoder = mclip
        loaders.tokenizer = xlmr_tokenizer
    return loaders


def model_index(version: str) -> Dict[str, Any]:
    idx: Dict[str, Any] = {
        "_class_name": "KandinskyCombinedPipeline" if version == "2.1" else "KandinskyV22CombinedPipeline",
        "_format": "onnx",
        "_diffusers_version": "0.17.0",
        "prior_prior": ["diffusers", "OnnxRuntimeModel"],
        "prior_text_encoder": ["diffusers", "OnnxRuntimeModel"],
        "prior_image_encoder": ["diffusers", "OnnxRuntimeModel"],
        "prior_tokenizer": ["transformers", "CLIPTokenizer"],
        "prior_scheduler": ["diffusers", "UnCLIPScheduler"],
    }
    if version == "2.1":
        idx["text_encoder"] = ["diffusers", "OnnxRuntimeModel"]
        idx["tokenizer"] = ["transformers", "XLMRobertaTokenizerFast"]
    idx["unet"] = ["diffusers", "OnnxRuntimeModel"]
    idx["movq_decoder"] = ["diffusers", "OnnxRuntimeModel"]
    idx["scheduler"] = ["diffusers", "DDIMScheduler" if version == "2.1" else "DDPMScheduler"]
    return idx


def _prepare(module: nn.Module, opts: ExportOptions) -> nn.Module:
    module.eval()
    module.requires_grad_(False)
    return module.to(device=opts.device, dtype=opts.dtype)


def _tokenize(tokenizer, prompts: List[str]) -> Tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer(
        prompts,
        padding="max_length",
        max_length=SEQ_LEN,
        truncation=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    return enc["input_ids"].to(torch.int64), enc["attention_mask"].to(torch.int64)


def _write_json(path: Path, obj: Any, indent: Optional[int] = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent)
        f.write("\n")


def _save_config(model: Any, out_dir: Path) -> None:
    """config.json next to model.onnx: diffusers ModelMixin.save_config / transformers config.save_pretrained."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if hasattr(getattr(model, "config", None), "save_pretrained"):  # transformers PretrainedConfig
        model.config.save_pretrained(str(out_dir))
    elif hasattr(model, "save_config"):  # diffusers ConfigMixin
        model.save_config(str(out_dir))
    else:
        raise RuntimeError(f"don't know how to save the config of {type(model).__name__}")


def _save_scheduler(scheduler: Any, out_dir: Path, expected_class: str, notes: List[str]) -> None:
    actual = type(scheduler).__name__
    if actual != expected_class:
        notes.append(f"{out_dir.name}: loaded a {actual}, model_index.json says {expected_class}")
    scheduler.save_pretrained(str(out_dir))
    if not (out_dir / "scheduler_config.json").exists():
        raise RuntimeError(f"{out_dir}/scheduler_config.json was not written")


def export_pipeline(
    loaders: ComponentLoaders,
    out: Path,
    opts: ExportOptions,
    components: Sequence[str] = ALL_COMPONENTS,
    export_image_encoder: bool = False,
) -> List[ComponentResult]:
    version = loaders.version
    if version not in ("2.1", "2.2"):
        raise ValueError(f"unknown version {version}")
    out.mkdir(parents=True, exist_ok=True)
    results: List[ComponentResult] = []
    notes: List[str] = []
    want = set(components)
    if version == "2.2":
        want -= {"tokenizer", "text_encoder"}

    torch.manual_seed(0)
    prompts_trace = ["", "a photograph of a red fox in the snow, 4k"]
    prompts_verify = ["a bowl of ramen", "", "an oil painting of a lighthouse at dusk, with long brushstrokes"]

    # ---------------- prior: tokenizer + CLIP text encoder ----------------
    prior_tok = loaders.prior_tokenizer()
    if "prior_tokenizer" in want:
        d = out / "prior_tokenizer"
        prior_tok.save_pretrained(str(d))
        for f in ("vocab.json", "merges.txt"):
            if not (d / f).exists():
                raise RuntimeError(f"prior tokenizer: {d / f} missing after save_pretrained")
        log(f"[prior_tokenizer] saved {type(prior_tok).__name__}")
    p_ids_trace, p_mask_trace = _tokenize(prior_tok, prompts_trace)
    p_ids_verify, p_mask_verify = _tokenize(prior_tok, prompts_verify)
    del prior_tok

    if "prior_text_encoder" in want:
        te = _prepare(loaders.prior_text_encoder(), opts)
        embed_dim = cfg_get(te.config, "projection_dim")
        hidden_dim = cfg_get(te.config, "hidden_size")
        results.append(
            export_component(
                "prior_text_encoder",
                ClipTextEncoderWrapper(te),
                (p_ids_trace,),
                (p_ids_verify,),
                spec_clip_text(embed_dim, hidden_dim),
                out / "prior_text_encoder",
                opts,
            )
        )
        del te
        free_memory()

    # ---------------- prior: image encoder (zero embeds, optional ONNX) ----------------
    if "prior_image_encoder" in want:
        ie = loaders.prior_image_encoder()
        ie.eval()
        ie.requires_grad_(False)
        size = int(cfg_get(ie.config, "image_size", 224))
        # Computed once in fp32 on CPU, exactly as KandinskyPriorPipeline.get_zero_embed does
        # (raw zeros, no normalisation), so the worker needs no vision model.
        with torch.no_grad():
            zero = ie.to("cpu", torch.float32)(pixel_values=torch.zeros(1, 3, size, size), return_dict=True).image_embeds[0]
        d = out / "prior_image_encoder"
        d.mkdir(parents=True, exist_ok=True)
        _write_json(d / "zero_image_embeds.json", [float(x) for x in zero.tolist()])
        log(f"[prior_image_encoder] zero_image_embeds.json: {zero.numel()} values, |e|={zero.norm().item():.4f}")
        if export_image_encoder:
            ie = _prepare(ie, opts)
            embed_dim = cfg_get(ie.config, "projection_dim")
            g = torch.Generator().manual_seed(1)
            results.append(
                export_component(
                    "prior_image_encoder",
                    ClipImageEncoderWrapper(ie),
                    (torch.randn(2, 3, size, size, generator=g),),
                    (torch.randn(3, 3, size, size, generator=g),),
                    spec_clip_image(size, embed_dim),
                    d,
                    opts,
                )
            )
        else:
            stale = d / "model.onnx"
            if stale.exists():
                notes.append(f"{stale} is left over from an earlier run (not re-exported without --export-image-encoder)")
        del ie
        free_memory()

    # ---------------- prior: PriorTransformer ----------------
    if "prior_prior" in want:
        prior = loaders.prior()
        d = out / "prior_prior"
        d.mkdir(parents=True, exist_ok=True)
        # stats from the fp32 parameters, before any cast to fp16
        _write_json(
            d / "clip_stats.json",
            {
                "clip_mean": [float(x) for x in prior.clip_mean.detach().float().reshape(-1).tolist()],
                "clip_std": [float(x) for x in prior.clip_std.detach().float().reshape(-1).tolist()],
            },
        )
        _save_config(prior, d)
        set_eager_attention(prior)
        prior = _prepare(prior, opts)
        dim = int(cfg_get(prior.config, "embedding_dim"))
        g = torch.Generator().manual_seed(2)
        trace = (
            torch.randn(2, dim, generator=g),
            torch.tensor([999.0, 957.0]),
            torch.randn(2, dim, generator=g),
            torch.randn(2, SEQ_LEN, dim, generator=g),
            p_mask_trace.bool(),
        )
        verify = (
            torch.randn(3, dim, generator=g),
            torch.tensor([832.0, 832.0, 166.0]),
            torch.randn(3, dim, generator=g),
            torch.randn(3, SEQ_LEN, dim, generator=g),
            p_mask_verify.bool(),
        )
        results.append(export_component("prior_prior", PriorWrapper(prior), trace, verify, spec_prior(dim), d, opts))
        del prior
        free_memory()

    if "prior_scheduler" in want:
        _save_scheduler(loaders.prior_scheduler(), out / "prior_scheduler", EXPECTED_SCHEDULERS["prior_scheduler"], notes)
        log("[prior_scheduler] saved scheduler_config.json")

    # ---------------- decoder text side (2.1 only) ----------------
    if version == "2.1" and ({"tokenizer", "text_encoder"} & want):
        tok = loaders.tokenizer()
        if "tokenizer" in want:
            d = out / "tokenizer"
            tok.save_pretrained(str(d))
            if not (d / "tokenizer.json").exists():
                raise RuntimeError(f"{d}/tokenizer.json missing: load the tokenizer as XLMRobertaTokenizerFast")
            if not (d / "sentencepiece.bpe.model").exists():
                notes.append("tokenizer/sentencepiece.bpe.model was not written (fast tokenizer without its slow files); tokenizer.json is there")
            log(f"[tokenizer] saved {type(tok).__name__}")
        ids_trace, mask_trace = _tokenize(tok, prompts_trace)
        ids_verify, mask_verify = _tokenize(tok, prompts_verify)
        del tok
        if "text_encoder" in want:
            te = loaders.text_encoder()
            _save_config(te, out / "text_encoder")
            te = _prepare(te, opts)
            embed_dim = int(cfg_get(te.config, "numDims"))
            hidden_dim = int(cfg_get(te.config, "transformerDimensions"))
            results.append(
                export_component(
                    "text_encoder",
                    MultilingualClipWrapper(te),
                    (ids_trace, mask_trace),
                    (ids_verify, mask_verify),
                    spec_mclip(embed_dim, hidden_dim),
                    out / "text_encoder",
                    opts,
                )
            )
            del te
            free_memory()

    # ---------------- UNet ----------------
    if "unet" in want:
        unet = loaders.unet()
        d = out / "unet"
        _save_config(unet, d)
        set_eager_attention(unet)
        unet = _prepare(unet, opts)
        c = unet.config
        in_ch, out_ch = int(cfg_get(c, "in_channels")), int(cfg_get(c, "out_channels"))
        g = torch.Generator().manual_seed(3)
        if version == "2.1":
            hid = int(cfg_get(c, "encoder_hid_dim"))
            cross = int(cfg_get(c, "cross_attention_dim"))
            trace = (
                torch.randn(2, in_ch, 64, 64, generator=g),
                torch.tensor([991.0, 991.0]),
                torch.randn(2, SEQ_LEN, hid, generator=g),
                torch.randn(2, cross, generator=g),
                torch.randn(2, cross, generator=g),
            )
            verify = (
                torch.randn(1, in_ch, 48, 40, generator=g),
                torch.tensor([501.0]),
                torch.randn(1, SEQ_LEN, hid, generator=g),
                torch.randn(1, cross, generator=g),
                torch.randn(1, cross, generator=g),
            )
            wrapper: nn.Module = UNet21Wrapper(unet)
            spec = spec_unet21(in_ch, out_ch, hid, cross, cross)
        else:
            img = int(cfg_get(c, "encoder_hid_dim"))
            trace = (torch.randn(2, in_ch, 64, 64, generator=g), torch.tensor([981.0, 981.0]), torch.randn(2, img, generator=g))
            verify = (torch.randn(1, in_ch, 48, 40, generator=g), torch.tensor([501.0]), torch.randn(1, img, generator=g))
            wrapper = UNet22Wrapper(unet)
            spec = spec_unet22(in_ch, out_ch, img)
        results.append(export_component("unet", wrapper, trace, verify, spec, d, opts))
        del unet, wrapper
        free_memory()

    # ---------------- MoVQ decoder ----------------
    if "movq_decoder" in want:
        movq = loaders.movq()
        d = out / "movq_decoder"
        _save_config(movq, d)
        set_eager_attention(movq)
        movq = _prepare(movq, opts)
        lat = int(cfg_get(movq.config, "latent_channels"))
        outc = int(cfg_get(movq.config, "out_channels", 3))
        g = torch.Generator().manual_seed(4)
        results.append(
            export_component(
                "movq_decoder",
                MoVQDecoderWrapper(movq),
                (torch.randn(1, lat, 64, 64, generator=g),),
                (torch.randn(2, lat, 32, 24, generator=g),),
                spec_movq(lat, outc),
                d,
                opts,
            )
        )
        del movq
        free_memory()

    if "scheduler" in want:
        _save_scheduler(loaders.scheduler(), out / "scheduler", EXPECTED_SCHEDULERS[f"scheduler:{version}"], notes)
        log("[scheduler] saved scheduler_config.json")

    _write_json(out / "model_index.json", model_index(version), indent=2)
    log("[model_index] written")

    for n in notes:
        log(f"note: {n}")
    if results:
        results[-1].notes.extend(notes)
    return results


def list_outputs(out: Path) -> List[str]:
    lines = []
    for p in sorted(out.rglob("*")):
        if p.is_file():
            lines.append(f"  {p.relative_to(out)}  ({human_bytes(p.stat().st_size)})")
    return lines


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Export Kandinsky 2.1/2.2 (diffusers) to Easel's ONNX layout.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--version", choices=["2.1", "2.2"], default="2.1")
    ap.add_argument("--out", type=Path, required=True, help="output directory, e.g. models/kandinsky-2-1-onnx")
    ap.add_argument("--prior-repo", help="Hub id or local directory of the prior pipeline (default per version)")
    ap.add_argument("--decoder-repo", help="Hub id or local directory of the decoder pipeline (default per version)")
    ap.add_argument("--fp16", action="store_true", help="export float16 weights (needs --device cuda); I/O stays float32")
    ap.add_argument("--device", default="cpu", help="torch device used for tracing: cpu or cuda[:N]")
    ap.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    ap.add_argument("--export-image-encoder", action="store_true", help="also write prior_image_encoder/model.onnx")
    ap.add_argument(
        "--components",
        default=",".join(ALL_COMPONENTS),
        help="comma-separated subset to (re)write; model_index.json is always written",
    )
    ap.add_argument("--external-data", choices=["auto", "always", "never"], default="auto",
                    help=f"auto: weights.pb when a model's weights exceed {EXTERNAL_DATA_THRESHOLD_BYTES / 1e9:.1f} GB")
    ap.add_argument("--local-files-only", action="store_true", help="use only the local Hugging Face cache")
    ap.add_argument("--no-ort-check", action="store_true", help="skip the onnxruntime-vs-torch comparison")
    ap.add_argument("--rtol", type=float, help="relative tolerance (of max|torch|); default 1e-3, fp16 2e-2")
    ap.add_argument("--atol", type=float, help="absolute tolerance; default 1e-4, fp16 1e-2")
    return ap.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.fp16 and not args.device.startswith("cuda"):
        print("error: --fp16 export is only supported with --device cuda (as in diffusers' ONNX script)", file=sys.stderr)
        return 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda requested but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    components = [c.strip() for c in args.components.split(",") if c.strip()]
    unknown = sorted(set(components) - set(ALL_COMPONENTS))
    if unknown:
        print(f"error: unknown component(s) {unknown}; choose from {list(ALL_COMPONENTS)}", file=sys.stderr)
        return 2

    missing = []
    for mod in ("onnx", "diffusers", "transformers"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        print(f"error: missing Python package(s): {', '.join(missing)} (see infra/export/README.md)", file=sys.stderr)
        return 2

    prior_repo = args.prior_repo or DEFAULT_REPOS[args.version][0]
    decoder_repo = args.decoder_repo or DEFAULT_REPOS[args.version][1]
    runner = None if args.no_ort_check else python_ort_runner(args.device)
    opts = ExportOptions(
        opset=args.opset,
        device=args.device,
        fp16=args.fp16,
        external_data=args.external_data,
        ort_runner=runner,
        rtol=args.rtol,
        atol=args.atol,
    )
    log(f"Kandinsky {args.version}: prior={prior_repo} decoder={decoder_repo} -> {args.out}")
    log(f"opset {opts.opset}, {'fp16' if opts.fp16 else 'fp32'} weights, tracing on {opts.device}")
    if runner is None and not args.no_ort_check:
        log("onnxruntime is not installed: the ONNX-vs-torch comparison will be skipped")

    loaders = load_hf_components(args.version, prior_repo, decoder_repo, local_files_only=args.local_files_only)
    t0 = time.time()
    results = export_pipeline(loaders, args.out, opts, components, export_image_encoder=args.export_image_encoder)

    log("")
    log(f"Wrote {args.out} in {time.time() - t0:.0f}s:")
    for line in list_outputs(args.out):
        log(line)
    log("")
    failed = [r for r in results if not r.ok]
    for r in results:
        log(f"{'OK  ' if r.ok else 'FAIL'} {r.name}: checker {r.checker.split(':')[0]}, signature {r.signature.split(' ')[0]}, onnxruntime {r.ort.split(' ')[0]}")
    if failed:
        log(f"{len(failed)} component(s) failed verification: {', '.join(r.name for r in failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
