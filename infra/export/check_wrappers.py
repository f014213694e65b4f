#!/usr/bin/env python3
"""Self-check for kandinsky_to_onnx.py without diffusers, transformers or real weights.

Needs torch and onnx (Debian: `apt-get install python3-torch python3-onnx`) and, for the
numerical comparison, node + the project's onnxruntime-node (npm ci at the repo root).

It builds tiny stand-ins (d=32, as in notes section 9) whose call conventions copy the
diffusers/transformers classes the real export uses:

  * TinyPriorTransformer  - PriorTransformer.forward, line for line in its tensor logic
    (float timestep broadcast, prd token, causal + text mask, repeat_interleave per head),
    clip_mean / clip_std parameters, post_process_latents, save_config.
  * TinyUNet              - UNet2DConditionModel's call convention: sample, timestep
    (scalar or [B], .expand to batch), encoder_hidden_states, added_cond_kwargs,
    return_dict; the 'text_image' (2.1) and 'image' (2.2) embedding paths; an added-KV
    attention block (AttnAddedKVProcessor maths), downsample + nearest upsample.
  * TinyMoVQ              - VQModel.decode(h, force_not_quantize, return_dict) with a
    SpatialNorm decoder (nearest-resized z to each feature map's size) and 2x upsampling.
  * TinyMCLIP / TinyClipText / TinyClipVision - MultilingualCLIP.forward (masked mean),
    CLIPTextModelWithProjection (causal mask, argmax-EOS pooling, .text_embeds /
    .last_hidden_state), CLIPVisionModelWithProjection (.image_embeds).
  * tokenizer and scheduler stand-ins that write the files save_pretrained writes.

Then it runs the script's own export_pipeline() for 2.1 and 2.2 (same wrappers, export,
external-data collation, onnx.checker, signature checks), with onnxruntime-node as the
runner, and additionally checks:
  * the exact file layout of notes section 8 and model_index.json,
  * clip_stats.json / zero_image_embeds.json contents,
  * each exported model run in onnxruntime-node against a *pipeline-style* call of the
    stand-in (how diffusers' Kandinsky pipelines call the module), on a batch/spatial
    size different from the traced one.

What it cannot show: that the real diffusers/transformers modules trace the same way.
Run:  python3 infra/export/check_wrappers.py [--big] [--keep]
      (exit 0 and a final 'check_wrappers: N passed, 0 failed'). --big also exports a 2.4 GB
      stand-in to exercise the >2 GiB external-data path (~2 min, ~6 GB RAM, ~5 GB disk);
      --keep leaves the exported files in the printed temp directory.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import kandinsky_to_onnx as k2o  # noqa: E402

D = 32  # prior / CLIP embedding dim (768 in 2.1, 1280 in 2.2)
MCLIP_HIDDEN = 48  # XLM-R width (1024 in 2.1), deliberately != D
SEQ = k2o.SEQ_LEN


class Cfg(dict):
    """diffusers FrozenDict-like: item and attribute access."""

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError as e:
            raise AttributeError(k) from e


class ConfigSaver:
    def save_config(self, d: str) -> None:
        Path(d).mkdir(parents=True, exist_ok=True)
        (Path(d) / "config.json").write_text(json.dumps({"_class_name": self.class_name, **self.config}, indent=2))


def timestep_embedding(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    # diffusers get_timestep_embedding(flip_sin_to_cos=True, downscale_freq_shift=0)
    half = dim // 2
    exponent = -math.log(10000) * torch.arange(start=0, end=half, dtype=torch.float32, device=timesteps.device) / half
    emb = timesteps[:, None].float() * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    return torch.cat([emb[:, half:], emb[:, :half]], dim=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, out_dim)
        self.linear_2 = nn.Linear(out_dim, out_dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class ClassicAttention(nn.Module):
    """diffusers Attention + AttnProcessor / AttnAddedKVProcessor (the classic, non-SDPA maths)."""

    def __init__(self, dim, heads, head_dim, cross_dim=None, added_kv_dim=None, bias=True):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.scale = head_dim**-0.5
        self.to_q = nn.Linear(dim, inner, bias=bias)
        self.to_k = nn.Linear(cross_dim or dim, inner, bias=bias)
        self.to_v = nn.Linear(cross_dim or dim, inner, bias=bias)
        self.added_kv = added_kv_dim is not None
        if self.added_kv:
            self.add_k_proj = nn.Linear(added_kv_dim, inner)
            self.add_v_proj = nn.Linear(added_kv_dim, inner)
        self.to_out = nn.Linear(inner, dim)

    def head_to_batch_dim(self, t):
        b, n, c = t.shape
        return t.reshape(b, n, self.heads, c // self.heads).permute(0, 2, 1, 3).reshape(b * self.heads, n, c // self.heads)

    def batch_to_head_dim(self, t):
        bh, n, d = t.shape
        return t.reshape(bh // self.heads, self.heads, n, d).permute(0, 2, 1, 3).reshape(bh // self.heads, n, d * self.heads)

    def prepare_attention_mask(self, mask, target_length, batch_size):
        if mask is None:
            return None
        if mask.shape[0] < batch_size * self.heads:
            mask = mask.repeat_interleave(self.heads, dim=0)
        return mask

    def get_attention_scores(self, q, k, mask):
        if mask is None:
            base = torch.empty(q.shape[0], q.shape[1], k.shape[1], dtype=q.dtype, device=q.device)
            beta = 0
        else:
            base = mask
            beta = 1
        scores = torch.baddbmm(base, q, k.transpose(-1, -2), beta=beta, alpha=self.scale)
        return scores.softmax(dim=-1).to(q.dtype)

    def forward(self, x, encoder_hidden_states=None, attention_mask=None):
        b, n, _ = x.shape
        mask = self.prepare_attention_mask(attention_mask, n, b)
        q = self.head_to_batch_dim(self.to_q(x))
        if self.added_kv:
            ek = self.head_to_batch_dim(self.add_k_proj(encoder_hidden_states))
            ev = self.head_to_batch_dim(self.add_v_proj(encoder_hidden_states))
            k = torch.cat([ek, self.head_to_batch_dim(self.to_k(x))], dim=1)
            v = torch.cat([ev, self.head_to_batch_dim(self.to_v(x))], dim=1)
        else:
            ctx = x if encoder_hidden_states is None else encoder_hidden_states
            k = self.head_to_batch_dim(self.to_k(ctx))
            v = self.head_to_batch_dim(self.to_v(ctx))
        probs = self.get_attention_scores(q, k, mask)
        return self.to_out(self.batch_to_head_dim(torch.bmm(probs, v)))


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, head_dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = ClassicAttention(dim, heads, head_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x, attention_mask=None):
        x = self.attn1(self.norm1(x), attention_mask=attention_mask) + x
        return self.ff(self.norm3(x)) + x


# ----------------------------------------------------------------------------- prior


class TinyPriorTransformer(nn.Module, ConfigSaver):
    class_name = "PriorTransformer"

    def __init__(self, heads=2, head_dim=16, layers=2, embedding_dim=D, num_embeddings=SEQ, additional_embeddings=4):
        super().__init__()
        inner = heads * head_dim
        self.config = Cfg(num_attention_heads=heads, attention_head_dim=head_dim, num_layers=layers,
                          embedding_dim=embedding_dim, num_embeddings=num_embeddings,
                          additional_embeddings=additional_embeddings)
        self.additional_embeddings = additional_embeddings
        self.inner = inner
        self.time_embedding = TimestepEmbedding(inner, inner)
        self.proj_in = nn.Linear(embedding_dim, inner)
        self.embedding_proj = nn.Linear(embedding_dim, inner)
        self.encoder_hidden_states_proj = nn.Linear(embedding_dim, inner)
        self.positional_embedding = nn.Parameter(0.02 * torch.randn(1, num_embeddings + additional_embeddings, inner))
        self.prd_embedding = nn.Parameter(0.02 * torch.randn(1, 1, inner))
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(inner, heads, head_dim) for _ in range(layers)])
        self.norm_out = nn.LayerNorm(inner)
        self.proj_to_clip_embeddings = nn.Linear(inner, embedding_dim)
        n = num_embeddings + additional_embeddings
        causal = torch.full([n, n], -10000.0)
        causal.triu_(1)
        self.register_buffer("causal_attention_mask", causal[None, ...], persistent=False)
        self.clip_mean = nn.Parameter(torch.randn(1, embedding_dim))
        self.clip_std = nn.Parameter(torch.rand(1, embedding_dim) + 0.5)

    @property
    def dtype(self):
        return self.proj_in.weight.dtype

    def forward(self, hidden_states, timestep, proj_embedding, encoder_hidden_states=None, attention_mask=None, return_dict=True):
        # tensor logic as in diffusers PriorTransformer.forward
        batch_size = hidden_states.shape[0]
        timesteps = timestep
        if not torch.is_tensor(timesteps):
            timesteps = torch.tensor([timesteps], dtype=torch.long, device=hidden_states.device)
        elif torch.is_tensor(timesteps) and len(timesteps.shape) == 0:
            timesteps = timesteps[None].to(hidden_states.device)
        timesteps = timesteps * torch.ones(batch_size, dtype=timesteps.dtype, device=timesteps.device)
        timesteps_projected = timestep_embedding(timesteps, self.inner).to(dtype=self.dtype)
        time_embeddings = self.time_embedding(timesteps_projected)
        proj_embeddings = self.embedding_proj(proj_embedding)
        encoder_hidden_states = self.encoder_hidden_states_proj(encoder_hidden_states)
        hidden_states = self.proj_in(hidden_states)
        positional_embeddings = self.positional_embedding.to(hidden_states.dtype)
        additional_embeds = [encoder_hidden_states]
        additional_embeddings_len = encoder_hidden_states.shape[1]
        if len(proj_embeddings.shape) == 2:
            proj_embeddings = proj_embeddings[:, None, :]
        if len(hidden_states.shape) == 2:
            hidden_states = hidden_states[:, None, :]
        additional_embeds = additional_embeds + [proj_embeddings, time_embeddings[:, None, :], hidden_states]
        prd_embedding = self.prd_embedding.to(hidden_states.dtype).expand(batch_size, -1, -1)
        additional_embeds.append(prd_embedding)
        hidden_states = torch.cat(additional_embeds, dim=1)
        additional_embeddings_len = additional_embeddings_len + proj_embeddings.shape[1] + 1
        if positional_embeddings.shape[1] < hidden_states.shape[1]:
            positional_embeddings = F.pad(positional_embeddings, (0, 0, additional_embeddings_len, 1), value=0.0)
        hidden_states = hidden_states + positional_embeddings
        if attention_mask is not None:
            attention_mask = (1 - attention_mask.to(hidden_states.dtype)) * -10000.0
            attention_mask = F.pad(attention_mask, (0, self.additional_embeddings), value=0.0)
            attention_mask = (attention_mask[:, None, :] + self.causal_attention_mask).to(hidden_states.dtype)
            attention_mask = attention_mask.repeat_interleave(
                self.config.num_attention_heads, dim=0, output_size=attention_mask.shape[0] * self.config.num_attention_heads
            )
        for block in self.transformer_blocks:
            hidden_states = block(hidden_states, attention_mask=attention_mask)
        hidden_states = self.norm_out(hidden_states)
        hidden_states = hidden_states[:, -1]
        predicted_image_embedding = self.proj_to_clip_embeddings(hidden_states)
        if not return_dict:
            return (predicted_image_embedding,)
        return SimpleNamespace(predicted_image_embedding=predicted_image_embedding)

    def post_process_latents(self, prior_latents):
        return prior_latents * self.clip_std + self.clip_mean


# ----------------------------------------------------------------------------- unet


class ResBlock(nn.Module):
    """ResnetBlock2D with time_embedding_norm='scale_shift'."""

    def __init__(self, ch, emb_dim):
        super().__init__()
        self.norm1 = nn.GroupNorm(4, ch)
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.time_emb_proj = nn.Linear(emb_dim, 2 * ch)
        self.norm2 = nn.GroupNorm(4, ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        t = self.time_emb_proj(F.silu(emb))[:, :, None, None]
        scale, shift = torch.chunk(t, 2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return x + self.conv2(F.silu(h))


class AddedKVAttnBlock(nn.Module):
    def __init__(self, ch, cross_dim, heads=2):
        super().__init__()
        self.group_norm = nn.GroupNorm(4, ch)
        self.attn = ClassicAttention(ch, heads, ch // heads, added_kv_dim=cross_dim)

    def forward(self, x, context):
        residual = x
        b, c, h, w = x.shape
        hs = self.group_norm(x).view(b, c, h * w).transpose(1, 2)
        hs = self.attn(hs, encoder_hidden_states=context)
        return hs.transpose(-1, -2).reshape(residual.shape) + residual


class TinyUNet(nn.Module, ConfigSaver):
    """UNet2DConditionModel call convention with Kandinsky's embedding types."""

    class_name = "UNet2DConditionModel"

    def __init__(self, kind: str, ch=16, cross_dim=D, encoder_hid_dim=MCLIP_HIDDEN, image_tokens=10):
        super().__init__()
        assert kind in ("text_image", "image")
        self.kind = kind
        emb = 4 * ch
        self.config = Cfg(in_channels=4, out_channels=8, cross_attention_dim=cross_dim,
                          encoder_hid_dim=encoder_hid_dim if kind == "text_image" else D,
                          encoder_hid_dim_type="text_image_proj" if kind == "text_image" else "image_proj",
                          addition_embed_type=kind, block_out_channels=[ch, 2 * ch])
        self.ch = ch
        self.image_tokens = image_tokens
        self.time_embedding = TimestepEmbedding(ch, emb)
        if kind == "text_image":
            # TextImageProjection + TextImageTimeEmbedding
            self.image_embeds = nn.Linear(cross_dim, image_tokens * cross_dim)
            self.text_proj = nn.Linear(encoder_hid_dim, cross_dim)
            self.add_text_proj = nn.Linear(cross_dim, emb)
            self.add_text_norm = nn.LayerNorm(emb)
            self.add_image_proj = nn.Linear(cross_dim, emb)
        else:
            # ImageProjection + ImageTimeEmbedding
            self.image_embeds = nn.Linear(D, 4 * cross_dim)
            self.image_norm = nn.LayerNorm(cross_dim)
            self.add_image_proj = nn.Linear(D, emb)
            self.add_image_norm = nn.LayerNorm(emb)
        self.conv_in = nn.Conv2d(4, ch, 3, padding=1)
        self.res_in = ResBlock(ch, emb)
        self.down = nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1)
        self.res_mid = ResBlock(2 * ch, emb)
        self.attn_mid = AddedKVAttnBlock(2 * ch, cross_dim)
        self.up_conv = nn.Conv2d(2 * ch, ch, 3, padding=1)
        self.res_out = ResBlock(2 * ch, emb)
        self.norm_out = nn.GroupNorm(4, 2 * ch)
        self.conv_out = nn.Conv2d(2 * ch, 8, 3, padding=1)

    def forward(self, sample, timestep, encoder_hidden_states, class_labels=None, timestep_cond=None,
                attention_mask=None, cross_attention_kwargs=None, added_cond_kwargs=None,
                down_block_additional_residuals=None, mid_block_additional_residual=None,
                down_intrablock_additional_residuals=None, encoder_attention_mask=None, return_dict=True):
        timesteps = timestep
        if not torch.is_tensor(timesteps):
            timesteps = torch.tensor([timesteps], dtype=torch.float32, device=sample.device)
        elif len(timesteps.shape) == 0:
            timesteps = timesteps[None].to(sample.device)
        timesteps = timesteps.expand(sample.shape[0])
        t_emb = timestep_embedding(timesteps, self.ch).to(dtype=sample.dtype)
        emb = self.time_embedding(t_emb)
        if self.kind == "text_image":
            if "image_embeds" not in added_cond_kwargs:
                raise ValueError("text_image needs image_embeds")
            image_embs = added_cond_kwargs.get("image_embeds")
            text_embs = added_cond_kwargs.get("text_embeds", encoder_hidden_states)
            emb = emb + self.add_text_norm(self.add_text_proj(text_embs)) + self.add_image_proj(image_embs)
            batch_size = encoder_hidden_states.shape[0]
            image_text = self.image_embeds(image_embs).reshape(batch_size, self.image_tokens, -1)
            encoder_hidden_states = torch.cat([image_text, self.text_proj(encoder_hidden_states)], dim=1)
        else:
            image_embs = added_cond_kwargs.get("image_embeds")
            emb = emb + self.add_image_norm(self.add_image_proj(image_embs))
            batch_size = image_embs.shape[0]
            encoder_hidden_states = self.image_norm(self.image_embeds(image_embs).reshape(batch_size, 4, -1))
        h0 = self.res_in(self.conv_in(sample), emb)
        h = self.res_mid(self.down(h0), emb)
        h = self.attn_mid(h, encoder_hidden_states)
        h = self.up_conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.res_out(torch.cat([h, h0], dim=1), emb)
        out = self.conv_out(F.silu(self.norm_out(h)))
        if not return_dict:
            return (out,)
        return SimpleNamespace(sample=out)


# ----------------------------------------------------------------------------- movq


class SpatialNorm(nn.Module):
    def __init__(self, f_ch, zq_ch):
        super().__init__()
        self.norm_layer = nn.GroupNorm(4, f_ch, eps=1e-6, affine=True)
        self.conv_y = nn.Conv2d(zq_ch, f_ch, 1)
        self.conv_b = nn.Conv2d(zq_ch, f_ch, 1)

    def forward(self, f, zq):
        f_size = f.shape[-2:]
        zq = F.interpolate(zq, size=f_size, mode="nearest")
        return self.norm_layer(f) * self.conv_y(zq) + self.conv_b(zq)


class DecoderOutput(dict):
    def __getattr__(self, k):
        return self[k]


class TinyMoVQ(nn.Module, ConfigSaver):
    class_name = "VQModel"

    def __init__(self, latent=4, blocks=(32, 16)):
        super().__init__()
        self.config = Cfg(latent_channels=latent, out_channels=3, block_out_channels=list(blocks),
                          norm_type="spatial", scaling_factor=0.18215, num_vq_embeddings=64)
        self.codebook = nn.Embedding(64, latent)
        self.post_quant_conv = nn.Conv2d(latent, latent, 1)
        self.conv_in = nn.Conv2d(latent, blocks[0], 3, padding=1)
        self.norm_mid = SpatialNorm(blocks[0], latent)
        self.attn = ClassicAttention(blocks[0], 1, blocks[0])
        self.up = nn.Conv2d(blocks[0], blocks[1], 3, padding=1)
        self.norm_out = SpatialNorm(blocks[1], latent)
        self.conv_out = nn.Conv2d(blocks[1], 3, 3, padding=1)

    def quantize(self, h):
        b, c, hh, ww = h.shape
        flat = h.permute(0, 2, 3, 1).reshape(-1, c)
        idx = torch.cdist(flat, self.codebook.weight).argmin(dim=1)
        q = self.codebook(idx).reshape(b, hh, ww, c).permute(0, 3, 1, 2)
        return q, torch.zeros(b), idx

    def decoder(self, z, zq):
        h = self.conv_in(z)
        h = F.silu(self.norm_mid(h, zq))
        b, c, hh, ww = h.shape
        a = self.attn(h.view(b, c, hh * ww).transpose(1, 2))
        h = h + a.transpose(1, 2).reshape(b, c, hh, ww)
        h = self.up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = F.silu(self.norm_out(h, zq))
        return self.conv_out(h)

    def decode(self, h, force_not_quantize=False, return_dict=True, shape=None):
        if not force_not_quantize:
            quant, commit_loss, _ = self.quantize(h)
        else:
            quant = h
            commit_loss = torch.zeros((h.shape[0])).to(h.device, dtype=h.dtype)
        quant2 = self.post_quant_conv(quant)
        dec = self.decoder(quant2, quant)
        if not return_dict:
            return dec, commit_loss
        return DecoderOutput(sample=dec, commit_loss=commit_loss)


# ----------------------------------------------------------------------------- text / image encoders


class ConfigWithSave(SimpleNamespace):
    def save_pretrained(self, d):
        Path(d).mkdir(parents=True, exist_ok=True)
        cfg = {k: v for k, v in vars(self).items()}
        (Path(d) / "config.json").write_text(json.dumps(cfg, indent=2))


class EagerSelfAttention(nn.Module):
    """transformers' eager attention (CLIPAttention / XLMRobertaSelfAttention): [B,H,L,d] with a
    broadcast 4-D additive mask [B,1,L,L] or [B,1,1,L]."""

    def __init__(self, dim, heads=2):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x, mask):
        b, n, c = x.shape

        def split(t):
            return t.view(b, n, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        w = torch.matmul(q, k.transpose(2, 3)) * self.head_dim**-0.5 + mask
        o = torch.matmul(w.softmax(dim=-1), v).transpose(1, 2).reshape(b, n, c)
        return self.out_proj(o)


class EncoderLayer(nn.Module):
    def __init__(self, dim, heads=2):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = EagerSelfAttention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x, mask):
        x = x + self.attn(self.ln1(x), mask)
        return x + self.mlp(self.ln2(x))


class TinyMCLIP(nn.Module):
    """MultilingualCLIP: XLM-R body, masked mean, LinearTransformation; returns a tuple."""

    def __init__(self, vocab=300, hidden=MCLIP_HIDDEN, out=D):
        super().__init__()
        self.config = ConfigWithSave(model_type="M-CLIP", transformerDimensions=hidden, numDims=out, hidden_size=hidden)
        self.emb = nn.Embedding(vocab, hidden)
        self.pos = nn.Parameter(0.02 * torch.randn(1, SEQ, hidden))
        self.layer = EncoderLayer(hidden)
        self.LinearTransformation = nn.Linear(hidden, out)

    def transformer(self, input_ids, attention_mask):
        x = self.emb(input_ids) + self.pos
        ext = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min  # [B,1,1,L]
        return (self.layer(x, ext),)

    def forward(self, input_ids, attention_mask):
        embs = self.transformer(input_ids=input_ids, attention_mask=attention_mask)[0]
        embs2 = (embs * attention_mask.unsqueeze(2)).sum(dim=1) / attention_mask.sum(dim=1)[:, None]
        return self.LinearTransformation(embs2), embs


class TinyClipText(nn.Module):
    """CLIPTextModelWithProjection: causal mask, pooled at argmax(input_ids) (the EOS id is the largest)."""

    def __init__(self, vocab=300, hidden=D, proj=D):
        super().__init__()
        self.config = ConfigWithSave(hidden_size=hidden, projection_dim=proj, max_position_embeddings=SEQ)
        self.emb = nn.Embedding(vocab, hidden)
        self.pos = nn.Parameter(0.02 * torch.randn(1, SEQ, hidden))
        self.layer = EncoderLayer(hidden)
        self.final_layer_norm = nn.LayerNorm(hidden)
        self.text_projection = nn.Linear(hidden, proj, bias=False)

    def forward(self, input_ids, attention_mask=None, return_dict=True):
        x = self.emb(input_ids) + self.pos
        bsz, L = input_ids.shape
        # transformers _make_causal_mask: [B,1,L,L]
        causal = torch.full((L, L), torch.finfo(x.dtype).min)
        cond = torch.arange(L)
        causal.masked_fill_(cond < (cond + 1).view(L, 1), 0)
        causal = causal[None, None, :, :].expand(bsz, 1, L, L)
        h = self.final_layer_norm(self.layer(x, causal))
        pooled = h[torch.arange(h.shape[0], device=h.device), input_ids.to(torch.int).argmax(dim=-1)]
        return SimpleNamespace(text_embeds=self.text_projection(pooled), last_hidden_state=h)


class TinyClipVision(nn.Module):
    def __init__(self, proj=D, image_size=224):
        super().__init__()
        self.config = ConfigWithSave(image_size=image_size, projection_dim=proj, hidden_size=8)
        self.patch = nn.Conv2d(3, 8, 32, stride=32)
        self.pre = nn.Parameter(0.1 * torch.randn(8))
        self.ln = nn.LayerNorm(8)
        self.visual_projection = nn.Linear(8, proj, bias=False)

    def forward(self, pixel_values, return_dict=True):
        h = self.patch(pixel_values).flatten(2).mean(-1) + self.pre
        return SimpleNamespace(image_embeds=self.visual_projection(self.ln(h)))


# ----------------------------------------------------------------------------- tokenizers, schedulers


class _Tok:
    bos = eos = pad = 0
    files: Sequence[str] = ()

    def __call__(self, prompts, padding=None, max_length=None, truncation=None, return_attention_mask=True, return_tensors=None, **_):
        ids, mask = [], []
        for p in prompts:
            body = [3 + (sum(map(ord, w)) % 250) for w in p.split()]
            toks = ([self.bos] + body + [self.eos])[:max_length]
            n = len(toks)
            ids.append(toks + [self.pad] * (max_length - n))
            mask.append([1] * n + [0] * (max_length - n))
        return {"input_ids": torch.tensor(ids, dtype=torch.int64), "attention_mask": torch.tensor(mask, dtype=torch.int64)}

    def save_pretrained(self, d):
        Path(d).mkdir(parents=True, exist_ok=True)
        for f in self.files:
            (Path(d) / f).write_text("{}" if f.endswith(".json") else "stand-in\n")


class CLIPTokenizer(_Tok):
    bos, eos, pad = 298, 299, 0  # eos is the largest id, as CLIP's argmax pooling assumes
    files = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")


class XLMRobertaTokenizerFast(_Tok):
    bos, pad, eos = 0, 1, 2
    files = ("tokenizer.json", "sentencepiece.bpe.model", "tokenizer_config.json", "special_tokens_map.json")


class _Sched:
    def save_pretrained(self, d):
        Path(d).mkdir(parents=True, exist_ok=True)
        (Path(d) / "scheduler_config.json").write_text(json.dumps({"_class_name": type(self).__name__, "num_train_timesteps": 1000}))


class UnCLIPScheduler(_Sched):
    pass


class DDIMScheduler(_Sched):
    pass


class DDPMScheduler(_Sched):
    pass


# ----------------------------------------------------------------------------- onnxruntime-node runner


_NP_DTYPE_NAMES = {np.dtype("float32"): "float32", np.dtype("int64"): "int64", np.dtype("bool"): "bool"}


def node_ort_runner(model_path: Path, feeds: Dict[str, Any], output_names: Sequence[str], fp16: bool) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory() as td:
        inputs = []
        for name, arr in feeds.items():
            arr = np.ascontiguousarray(arr)
            f = Path(td) / f"in_{name}.bin"
            arr.tofile(f)
            inputs.append({"name": name, "dtype": _NP_DTYPE_NAMES[arr.dtype], "shape": list(arr.shape), "file": str(f)})
        req = Path(td) / "request.json"
        req.write_text(json.dumps({"model": str(model_path.resolve()), "outDir": td, "outputs": list(output_names), "inputs": inputs}))
        proc = subprocess.run(["node", str(HERE / "ort_run.mjs"), str(req)], capture_output=True, text=True, cwd=str(HERE))
        if proc.returncode != 0:
            raise RuntimeError(f"onnxruntime-node failed: {proc.stderr.strip()[-2000:]}")
        meta = json.loads(proc.stdout)["outputs"]
        return {n: np.fromfile(meta[n]["file"], dtype=np.float32).reshape(meta[n]["shape"]) for n in output_names}


# ----------------------------------------------------------------------------- the check


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, cond: bool, what: str, detail: str = "") -> None:
        if cond:
            self.passed += 1
            print(f"  ok    {what}")
        else:
            self.failed += 1
            print(f"  FAIL  {what} {detail}")


def close(a: np.ndarray, b: np.ndarray, rtol=1e-4, atol=1e-5) -> tuple:
    if a.shape != b.shape:
        return False, f"shape {a.shape} != {b.shape}"
    err = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
    bound = atol + rtol * float(np.max(np.abs(b)))
    return err <= bound, f"max err {err:.3g} (bound {bound:.3g})"


EXPECTED_INDEX_21 = {
    "_class_name": "KandinskyCombinedPipeline", "_format": "onnx", "_diffusers_version": "0.17.0",
    "prior_prior": ["diffusers", "OnnxRuntimeModel"], "prior_text_encoder": ["diffusers", "OnnxRuntimeModel"],
    "prior_image_encoder": ["diffusers", "OnnxRuntimeModel"], "prior_tokenizer": ["transformers", "CLIPTokenizer"],
    "prior_scheduler": ["diffusers", "UnCLIPScheduler"], "text_encoder": ["diffusers", "OnnxRuntimeModel"],
    "tokenizer": ["transformers", "XLMRobertaTokenizerFast"], "unet": ["diffusers", "OnnxRuntimeModel"],
    "movq_decoder": ["diffusers", "OnnxRuntimeModel"], "scheduler": ["diffusers", "DDIMScheduler"],
}
EXPECTED_INDEX_22 = {k: v for k, v in EXPECTED_INDEX_21.items() if k not in ("text_encoder", "tokenizer")}
EXPECTED_INDEX_22.update({"_class_name": "KandinskyV22CombinedPipeline", "scheduler": ["diffusers", "DDPMScheduler"]})


def run_version(version: str, root: Path, c: Checks) -> None:
    print(f"\n=== Kandinsky {version} stand-ins ===")
    torch.manual_seed(0 if version == "2.1" else 1)
    m = SimpleNamespace(
        prior=TinyPriorTransformer(),
        prior_text_encoder=TinyClipText(),
        prior_tokenizer=CLIPTokenizer(),
        prior_image_encoder=TinyClipVision(),
        unet=TinyUNet("text_image" if version == "2.1" else "image"),
        movq=TinyMoVQ(),
        text_encoder=TinyMCLIP() if version == "2.1" else None,
        tokenizer=XLMRobertaTokenizerFast() if version == "2.1" else None,
    )
    loaders = k2o.ComponentLoaders(
        version=version,
        prior=lambda: m.prior,
        prior_text_encoder=lambda: m.prior_text_encoder,
        prior_tokenizer=lambda: m.prior_tokenizer,
        prior_image_encoder=lambda: m.prior_image_encoder,
        prior_scheduler=UnCLIPScheduler,
        unet=lambda: m.unet,
        movq=lambda: m.movq,
        scheduler=DDIMScheduler if version == "2.1" else DDPMScheduler,
        text_encoder=(lambda: m.text_encoder) if version == "2.1" else None,
        tokenizer=(lambda: m.tokenizer) if version == "2.1" else None,
    )
    # Force the external-data path for the two largest stand-ins (unet, prior) and the
    # single-file path for the rest, so both code paths are exercised.
    sizes = {"unet": k2o.module_bytes(m.unet), "prior_prior": k2o.module_bytes(m.prior)}
    threshold = min(sizes.values()) - 1
    others = [m.prior_text_encoder, m.movq, m.prior_image_encoder] + ([m.text_encoder] if m.text_encoder else [])
    assert all(k2o.module_bytes(o) <= threshold for o in others), "stand-in sizes no longer split as intended"
    opts = k2o.ExportOptions(device="cpu", fp16=False, external_threshold_bytes=threshold, ort_runner=node_ort_runner)
    out = root / f"kandinsky-{version.replace('.', '-')}-onnx"
    results = k2o.export_pipeline(loaders, out, opts, export_image_encoder=True)

    print(f"--- checks ({version})")
    for r in results:
        c.check(r.ok, f"export_component {r.name}: checker/signature/onnxruntime-vs-wrapper", f"{r.checker} | {r.signature} | {r.ort}")

    # exact layout of notes section 8 (+ the optional image encoder ONNX)
    expected = {
        "model_index.json",
        "prior_tokenizer/vocab.json", "prior_tokenizer/merges.txt", "prior_tokenizer/tokenizer_config.json",
        "prior_tokenizer/special_tokens_map.json",
        "prior_text_encoder/model.onnx",
        "prior_image_encoder/model.onnx", "prior_image_encoder/zero_image_embeds.json",
        "prior_prior/model.onnx", "prior_prior/weights.pb", "prior_prior/config.json", "prior_prior/clip_stats.json",
        "prior_scheduler/scheduler_config.json",
        "unet/model.onnx", "unet/weights.pb", "unet/config.json",
        "movq_decoder/model.onnx", "movq_decoder/config.json",
        "scheduler/scheduler_config.json",
    }
    if version == "2.1":
        expected |= {
            "tokenizer/tokenizer.json", "tokenizer/sentencepiece.bpe.model", "tokenizer/tokenizer_config.json",
            "tokenizer/special_tokens_map.json", "text_encoder/model.onnx", "text_encoder/config.json",
        }
    actual = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    c.check(actual == expected, "file layout", f"missing {sorted(expected - actual)} extra {sorted(actual - expected)}")
    c.check(not any(p.name.startswith(".tmp_export") for p in root.rglob("*")), "no temporary export dirs left")

    idx = json.loads((out / "model_index.json").read_text())
    c.check(idx == (EXPECTED_INDEX_21 if version == "2.1" else EXPECTED_INDEX_22), "model_index.json", json.dumps(idx))

    stats = json.loads((out / "prior_prior/clip_stats.json").read_text())
    ok_m = np.allclose(stats["clip_mean"], m.prior.clip_mean.detach().numpy().reshape(-1), atol=0, rtol=1e-7)
    ok_s = np.allclose(stats["clip_std"], m.prior.clip_std.detach().numpy().reshape(-1), atol=0, rtol=1e-7)
    c.check(ok_m and ok_s and len(stats["clip_mean"]) == D, "clip_stats.json = prior.clip_mean / clip_std")

    zero = json.loads((out / "prior_image_encoder/zero_image_embeds.json").read_text())
    with torch.no_grad():
        ref_zero = m.prior_image_encoder(torch.zeros(1, 3, 224, 224)).image_embeds[0].numpy()
    c.check(len(zero) == D and np.allclose(zero, ref_zero, atol=0, rtol=1e-6), "zero_image_embeds.json = image_encoder(zeros).image_embeds[0]")

    # pipeline-style calls of the stand-ins vs. the exported graphs, on new batch/spatial sizes
    g = torch.Generator().manual_seed(42)
    tok_ids, tok_mask = k2o._tokenize(m.prior_tokenizer, ["a cat", "", "a very long prompt " * 30, "x"])
    with torch.no_grad():
        o = m.prior_text_encoder(tok_ids)
        want = {"text_embeds": o.text_embeds.numpy(), "last_hidden_state": o.last_hidden_state.numpy()}
    got = node_ort_runner(out / "prior_text_encoder/model.onnx", {"input_ids": tok_ids.numpy()}, list(want), False)
    for n in want:
        ok, d = close(got[n], want[n])
        c.check(ok, f"prior_text_encoder {n} vs text_encoder(input_ids).{n} (batch 4)", d)

    x = torch.randn(5, D, generator=g)
    pe = torch.randn(5, D, generator=g)
    ehs = torch.randn(5, SEQ, D, generator=g)
    ids5, mask5 = k2o._tokenize(m.prior_tokenizer, ["a", "b c d", "", "e f", "g"])
    mask5 = mask5.bool()
    t = torch.tensor(957)  # the pipeline passes a 0-d timestep; the worker feeds it repeated to [B]
    with torch.no_grad():
        want_prior = m.prior(x, timestep=t, proj_embedding=pe, encoder_hidden_states=ehs, attention_mask=mask5).predicted_image_embedding.numpy()
    feeds = {"hidden_states": x.numpy(), "timestep": np.full([5], 957.0, np.float32), "proj_embedding": pe.numpy(),
             "encoder_hidden_states": ehs.numpy(), "attention_mask": mask5.numpy()}
    got = node_ort_runner(out / "prior_prior/model.onnx", feeds, ["predicted_image_embedding"], False)
    ok, d = close(got["predicted_image_embedding"], want_prior)
    c.check(ok, "prior_prior vs prior(...).predicted_image_embedding (batch 5, 0-d timestep in torch)", d)
    post = m.prior.post_process_latents(torch.from_numpy(got["predicted_image_embedding"])).detach().numpy()
    c.check(not np.allclose(post, got["predicted_image_embedding"]), "prior_prior output is before post_process_latents")
    # the text mask must matter (masked tokens excluded)
    feeds_nomask = dict(feeds, attention_mask=np.ones_like(mask5.numpy()))
    got2 = node_ort_runner(out / "prior_prior/model.onnx", feeds_nomask, ["predicted_image_embedding"], False)
    c.check(not np.allclose(got2["predicted_image_embedding"], got["predicted_image_embedding"]), "prior attention_mask reaches the graph")

    if version == "2.1":
        ids3, mask3 = k2o._tokenize(m.tokenizer, ["un chat", "", "ein Hund im Schnee"])
        with torch.no_grad():
            te, hs = m.text_encoder(input_ids=ids3, attention_mask=mask3)
        got = node_ort_runner(out / "text_encoder/model.onnx", {"input_ids": ids3.numpy(), "attention_mask": mask3.numpy()},
                              ["text_embeds", "last_hidden_state"], False)
        ok1, d1 = close(got["text_embeds"], te.numpy())
        ok2, d2 = close(got["last_hidden_state"], hs.numpy())
        c.check(ok1 and ok2 and got["text_embeds"].shape == (3, D) and got["last_hidden_state"].shape == (3, SEQ, MCLIP_HIDDEN),
                "text_encoder vs MultilingualCLIP(input_ids, attention_mask) (batch 3)", f"{d1}; {d2}")

    B, h, w = 3, 24, 40
    lat = torch.randn(B, 4, h, w, generator=g)
    ie = torch.randn(B, D, generator=g)
    tt = torch.tensor(981)
    if version == "2.1":
        ehs_u = torch.randn(B, SEQ, MCLIP_HIDDEN, generator=g)
        te_u = torch.randn(B, D, generator=g)
        with torch.no_grad():
            want_u = m.unet(sample=lat, timestep=tt, encoder_hidden_states=ehs_u,
                            added_cond_kwargs={"text_embeds": te_u, "image_embeds": ie}, return_dict=False)[0].numpy()
        feeds = {"sample": lat.numpy(), "timestep": np.full([B], 981.0, np.float32), "encoder_hidden_states": ehs_u.numpy(),
                 "text_embeds": te_u.numpy(), "image_embeds": ie.numpy()}
    else:
        with torch.no_grad():
            want_u = m.unet(sample=lat, timestep=tt, encoder_hidden_states=None,
                            added_cond_kwargs={"image_embeds": ie}, return_dict=False)[0].numpy()
        feeds = {"sample": lat.numpy(), "timestep": np.full([B], 981.0, np.float32), "image_embeds": ie.numpy()}
    got = node_ort_runner(out / "unet/model.onnx", feeds, ["out_sample"], False)
    ok, d = close(got["out_sample"], want_u)
    c.check(ok and got["out_sample"].shape == (B, 8, h, w), f"unet vs unet(sample, t, ..., added_cond_kwargs) [{B},4,{h},{w}] -> out_sample", d)
    # per-row timesteps: row i of a batched call equals a single call at t_i
    feeds_t = dict(feeds, timestep=np.array([981.0, 501.0, 1.0], np.float32))
    got_t = node_ort_runner(out / "unet/model.onnx", feeds_t, ["out_sample"], False)["out_sample"]
    single = {k: v[1:2] for k, v in feeds.items()}
    single["timestep"] = np.array([501.0], np.float32)
    got_1 = node_ort_runner(out / "unet/model.onnx", single, ["out_sample"], False)["out_sample"]
    ok, d = close(got_t[1:2], got_1)
    c.check(ok, "unet timestep is per batch row (f32[B])", d)

    z = torch.randn(2, 4, 12, 20, generator=g)
    with torch.no_grad():
        want_m = m.movq.decode(z, force_not_quantize=True)["sample"].numpy()
    got = node_ort_runner(out / "movq_decoder/model.onnx", {"latent_sample": z.numpy()}, ["sample"], False)
    ok, d = close(got["sample"], want_m)
    c.check(ok and got["sample"].shape == (2, 3, 24, 40), "movq_decoder vs movq.decode(z, force_not_quantize=True).sample [2,4,12,20]", d)
    with torch.no_grad():
        quantized = m.movq.decode(z)["sample"].numpy()
    c.check(not np.allclose(quantized, got["sample"]), "movq_decoder skips quantisation")

    pix = torch.randn(2, 3, 224, 224, generator=g)
    with torch.no_grad():
        want_i = m.prior_image_encoder(pixel_values=pix).image_embeds.numpy()
    got = node_ort_runner(out / "prior_image_encoder/model.onnx", {"pixel_values": pix.numpy()}, ["image_embeds"], False)
    ok, d = close(got["image_embeds"], want_i)
    c.check(ok, "prior_image_encoder (optional) vs image_encoder(pixel_values).image_embeds", d)


class BigStandIn(nn.Module):
    """~2.4 GB of fp32 weights: above protobuf's 2 GiB limit, like the real prior, unet and MCLIP."""

    def __init__(self, width=12288, layers=4):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(layers))

    def forward(self, x):
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return x


def run_big_check(root: Path, c: Checks) -> None:
    """The >2 GiB path: torch writes one file per tensor, the script collates them into weights.pb."""
    print("\n=== >2 GiB model (external data) ===")
    torch.manual_seed(0)
    m = BigStandIn().eval()
    spec = k2o.ModelSpec([k2o.TensorSpec("x", k2o.FLOAT, ("batch", 12288))], [k2o.TensorSpec("y", k2o.FLOAT, ("batch", 12288))])
    opts = k2o.ExportOptions(ort_runner=node_ort_runner)  # default threshold, auto external data
    d = root / "big" / "big"
    r = k2o.export_component("big", m, (torch.randn(2, 12288),), (torch.randn(3, 12288),), spec, d, opts)
    files = sorted(p.name for p in d.iterdir())
    c.check(r.ok and r.external_data, "2.4 GB model: checker (by path), signature, onnxruntime-node run", f"{r.checker} | {r.ort}")
    c.check(files == ["model.onnx", "weights.pb"], "2.4 GB model: exactly model.onnx + weights.pb", str(files))
    c.check((d / "model.onnx").stat().st_size < 1_000_000, "2.4 GB model: weights are out of model.onnx")


def run_cli_checks(c: Checks) -> None:
    print("\n=== CLI ===")
    rc = k2o.main(["--version", "2.1", "--out", "/nonexistent/x", "--fp16"])
    c.check(rc == 2, "--fp16 without --device cuda is refused")
    rc = k2o.main(["--version", "2.2", "--out", "/nonexistent/x", "--components", "unet,bogus"])
    c.check(rc == 2, "unknown --components entry is refused")
    a = k2o.parse_args(["--out", "o"])
    c.check(a.version == "2.1" and a.opset == 17 and not a.fp16 and a.device == "cpu", "defaults: 2.1, opset 17, fp32, cpu")


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    keep = "--keep" in args
    big = "--big" in args  # also export a 2.4 GB stand-in (~2 min, ~6 GB RAM, ~5 GB disk)
    print(f"torch {torch.__version__}")
    import onnx

    print(f"onnx {onnx.__version__}")
    node = shutil.which("node")
    if node is None:
        print("node not found: needed to run the exported graphs with onnxruntime-node")
        return 1
    root = Path(tempfile.mkdtemp(prefix="k2o-check-"))
    c = Checks()
    try:
        run_version("2.1", root, c)
        run_version("2.2", root, c)
        run_cli_checks(c)
        if big:
            run_big_check(root, c)
    finally:
        if keep:
            print(f"\noutputs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\ncheck_wrappers: {c.passed} passed, {c.failed} failed")
    return 0 if c.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
