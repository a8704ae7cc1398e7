"""What radlens knows about a loaded encoder: one typed record for every kind of model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class EncoderInfo:
    """How an encoder was loaded and what it takes.

    source: radlens, fcmae, state_dict, torchscript, factory or onnx; arch: the built-in
    architecture (or torchscript/custom/onnx); in_chans: input channels (None when the
    model does not say); embed_dim: width of its final output (None when only a forward
    pass can tell); preprocessing: the record of a radlens checkpoint, else None;
    unexpected / absent_optional / dropped: checkpoint keys ignored, missing-but-optional,
    dropped as non-encoder; extra: the other entries of a radlens checkpoint (e.g.
    `finetune`); trusted: whether the file was unpickled fully; weights, weights_prefix: a
    separate weights file and the key prefix it matched; onnx_*: an ONNX model's input and
    output tensors and execution providers.
    """

    spec: str
    source: str | None = None
    arch: str | None = None
    in_chans: int | None = None
    embed_dim: int | None = None
    preprocessing: dict | None = None
    unexpected: list = field(default_factory=list)
    absent_optional: list = field(default_factory=list)
    dropped: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    trusted: bool = False
    weights: str | None = None
    weights_prefix: str | None = None
    onnx_input: str | None = None
    onnx_input_shape: str | None = None
    onnx_output: str | None = None
    onnx_providers: list | None = None

    def update(self, **values) -> None:
        names = {f.name for f in fields(self)}
        for k, v in values.items():
            if k not in names:
                raise AttributeError(f"EncoderInfo has no field {k!r}")
            setattr(self, k, v)

    def to_dict(self) -> dict:
        return asdict(self)
