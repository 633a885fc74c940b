"""The five stage-2 variants of the paper's layer-by-layer analysis (docs/DESIGN.md section 4).

Words that stage 1 never saw (EMR words outside the PubMed vocabulary) have no pretrained
vector. A fixed embedding (EM[x]: `frozen`, `tune_conv`, and the frozen copy of
`tune_all_frozen_copy`) reads each of them as stage 1 would read it: as `<unk>`, whose vector
stage 1 trained on the words below its vocabulary cut. Left at their random N(0, 1)
initialisation and frozen, those rows would be fixed noise that dominates max-over-time
pooling. A tuned embedding (EM[v], and `scratch`) keeps a fresh random row per word and learns
it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from icdtransfer.model.cnn import CNNEncoder, EncoderShape, TargetModel

UNKNOWN = "<unk>"  # the vocabulary's id-1 token (data/vocab.py SPECIALS)


@dataclass(frozen=True)
class Variant:
    name: str
    paper: str  # the paper's notation
    transfer: bool  # EM and CV initialised from stage 1
    tune_embeddings: bool  # EM updated in stage 2
    tune_convolutions: bool  # CV updated in stage 2
    frozen_copy: bool  # a second, frozen EM/CV copy whose features are concatenated


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("scratch", "CNN without transfer", False, True, True, False),
        Variant("frozen", "EM[x] CV[x]", True, False, False, False),
        Variant("tune_conv", "EM[x] CV[v]", True, False, True, False),
        Variant("tune_all", "EM[v] CV[v]", True, True, True, False),
        Variant("tune_all_frozen_copy", "EM[v] CV[v] + EM[x] CV[x]", True, True, True, True),
    )
}


def variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"unknown transfer variant {name!r} (known: {', '.join(VARIANTS)})")
    return VARIANTS[name]


def encoder_state_by_vocabulary(
    stage1: dict[str, torch.Tensor],
    stage1_tokens: list[str],
    target: CNNEncoder,
    target_tokens: list[str],
) -> int:
    """Load stage-1 EM and CV into `target`, row by word: a word's vector follows the word even
    where the two vocabularies number it differently. Words unknown to stage 1 keep their
    fresh initialisation. Returns how many target words got a stage-1 vector."""
    embedding = stage1["embedding.weight"]
    if embedding.shape[1] != target.shape.embedding_dim:
        raise ValueError(
            f"stage-1 embeddings have {embedding.shape[1]} dimensions, the stage-2 model "
            f"{target.shape.embedding_dim}: set model.embedding_dim to match the pretrained model"
        )
    position = {token: i for i, token in enumerate(stage1_tokens)}
    pairs = [(i, position[t]) for i, t in enumerate(target_tokens) if t in position]
    rows_to = torch.tensor([i for i, _ in pairs], dtype=torch.long)
    rows_from = torch.tensor([j for _, j in pairs], dtype=torch.long)
    with torch.no_grad():
        target.embedding.weight[rows_to] = embedding[rows_from].to(target.embedding.weight.dtype)
        for k, conv in enumerate(target.convs):
            weight = stage1[f"convs.{k}.weight"]
            if weight.shape != conv.weight.shape:
                raise ValueError(
                    f"stage-1 convolution {k} has shape {tuple(weight.shape)}, the stage-2 model "
                    f"{tuple(conv.weight.shape)}: set model.filters/widths to match"
                )
            conv.weight.copy_(weight)
            conv.bias.copy_(stage1[f"convs.{k}.bias"])
    return len(pairs)


def read_new_words_as_unknown(
    stage1: dict[str, torch.Tensor],
    stage1_tokens: list[str],
    target: CNNEncoder,
    target_tokens: list[str],
) -> int:
    """Set the embedding row of every target word absent from the stage-1 vocabulary to the
    stage-1 `<unk>` vector (for an embedding that stage 2 keeps fixed); returns how many."""
    if UNKNOWN not in stage1_tokens:
        raise ValueError(f"the stage-1 vocabulary has no {UNKNOWN} token")
    unknown = stage1["embedding.weight"][stage1_tokens.index(UNKNOWN)]
    known = set(stage1_tokens)
    rows = torch.tensor(
        [i for i, t in enumerate(target_tokens) if t not in known], dtype=torch.long
    )
    with torch.no_grad():
        target.embedding.weight[rows] = unknown.to(target.embedding.weight.dtype)
    return len(rows)


def build_target_model(
    spec: Variant,
    shape: EncoderShape,
    n_labels: int,
    adaptation_size: int,
    dropout: float,
    target_tokens: list[str],
    stage1: tuple[dict[str, torch.Tensor], list[str]] | None,
    seed: int,
    pooling: str = "max",
) -> TargetModel:
    """A stage-2 model for one variant, initialised (seeded) and with the right parameters
    frozen. `stage1` is (encoder state dict, stage-1 vocabulary); `scratch` never reads it.
    Every variant takes either `pooling`: the encoder transfers the same (docs/DESIGN.md
    section 4)."""
    torch.manual_seed(seed)
    model = TargetModel(shape, n_labels, adaptation_size, dropout, spec.frozen_copy, pooling)
    if spec.transfer:
        if stage1 is None:
            raise ValueError(f"variant {spec.name} needs a stage-1 model")
        state, tokens = stage1
        encoder_state_by_vocabulary(state, tokens, model.encoder, target_tokens)
        if model.frozen_encoder is not None:
            model.frozen_encoder.load_state_dict(model.encoder.state_dict())
            read_new_words_as_unknown(state, tokens, model.frozen_encoder, target_tokens)
        if not spec.tune_embeddings:
            read_new_words_as_unknown(state, tokens, model.encoder, target_tokens)
    model.encoder.embedding.weight.requires_grad_(spec.tune_embeddings)
    for conv in model.encoder.convs:
        conv.weight.requires_grad_(spec.tune_convolutions)
        conv.bias.requires_grad_(spec.tune_convolutions)
    if model.frozen_encoder is not None:
        model.frozen_encoder.requires_grad_(False)
    return model
