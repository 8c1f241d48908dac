"""ATen op name -> :class:`OpClass`. One table; an op not named here is ``OTHER``.

The table is keyed by op packet (``aten.mm``), without the overload suffix.

>>> classify("aten.convolution.default")
<OpClass.CONV: 'conv'>
>>> classify("aten.view.default")
<OpClass.VIEW: 'view'>
"""

from __future__ import annotations

from dnnmap.ir.enums import OpClass

_TABLE: dict[OpClass, tuple[str, ...]] = {
    OpClass.MATMUL: (
        "mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "addbmm", "addmv", "mv", "dot",
        "einsum", "_int_mm", "_scaled_mm", "_grouped_mm", "grouped_mm", "_scaled_grouped_mm",
    ),
    OpClass.CONV: (
        "convolution", "conv1d", "conv2d", "conv3d", "_convolution", "conv_transpose1d",
        "conv_transpose2d", "conv_transpose3d", "cudnn_convolution", "mkldnn_convolution",
        "convolution_backward",
    ),
    OpClass.ATTENTION: (
        "scaled_dot_product_attention", "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_attention_math",
        "_flash_attention_forward", "_efficient_attention_forward",
        "_native_multi_head_attention",
        # backward (training)
        "_scaled_dot_product_flash_attention_backward", "_scaled_dot_product_efficient_attention_backward",
        "_scaled_dot_product_cudnn_attention_backward", "_scaled_dot_product_flash_attention_for_cpu_backward",
        "_flash_attention_backward", "_efficient_attention_backward",
    ),
    OpClass.SOFTMAX: ("softmax", "_softmax", "log_softmax", "_log_softmax", "_safe_softmax",
                      "_softmax_backward_data", "_log_softmax_backward_data"),
    OpClass.NORMALIZATION: (
        "batch_norm", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit",
        "native_batch_norm", "_native_batch_norm_legit_functional", "layer_norm",
        "native_layer_norm", "group_norm", "native_group_norm", "instance_norm", "rms_norm",
        "_fused_rms_norm", "cudnn_batch_norm", "miopen_batch_norm", "_batch_norm_with_update",
        "_batch_norm_no_update",
        "native_layer_norm_backward", "native_batch_norm_backward", "cudnn_batch_norm_backward",
        "miopen_batch_norm_backward", "batch_norm_backward", "native_group_norm_backward",
        "_fused_rms_norm_backward",
    ),
    OpClass.REDUCTION: (
        "sum", "mean", "amax", "amin", "max", "min", "prod", "var", "std", "var_mean",
        "std_mean", "argmax", "argmin", "norm", "linalg_vector_norm", "logsumexp", "cumsum",
        "cumprod", "any", "all", "avg_pool1d", "avg_pool2d", "avg_pool3d", "max_pool1d",
        "max_pool2d", "max_pool3d", "max_pool2d_with_indices", "max_pool3d_with_indices",
        "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
        "_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "adaptive_max_pool2d", "topk", "sort",
        "adaptive_max_pool1d", "adaptive_max_pool3d", "nansum", "aminmax", "count_nonzero",
        "equal", "_is_all_true", "_is_any_true", "histc", "bincount",
        "max_pool2d_with_indices_backward", "max_pool3d_with_indices_backward", "avg_pool2d_backward",
        "avg_pool3d_backward", "_adaptive_avg_pool2d_backward", "_adaptive_avg_pool3d_backward",
        "adaptive_max_pool2d_backward", "nll_loss_forward", "nll_loss2d_forward", "nll_loss", "nll_loss2d",
        "nll_loss_backward", "nll_loss2d_backward",
    ),
    OpClass.EMBEDDING: ("embedding", "embedding_bag", "_embedding_bag", "embedding_dense_backward"),
    OpClass.DATA_MOVEMENT: (
        "clone", "contiguous", "_to_copy", "copy", "copy_", "cat", "stack", "concat",
        "constant_pad_nd", "pad", "index", "index_select", "gather", "scatter", "scatter_add",
        "index_put", "index_put_", "repeat", "tile", "roll", "flip", "_unsafe_index",
        "upsample_nearest2d", "upsample_bilinear2d", "_upsample_bilinear2d_aa",
        "grid_sampler_2d", "masked_scatter", "index_copy", "_index_put_impl_", "new_zeros",
        "new_ones", "new_empty", "new_full", "zeros", "ones", "full", "empty", "arange",
        "zeros_like", "ones_like", "full_like", "empty_like", "rand", "randn", "rand_like",
        "randn_like", "scalar_tensor", "tril", "triu", "fill", "fill_", "zero_", "lift_fresh_copy",
        "masked_fill", "where", "one_hot",
        "pixel_shuffle", "channel_shuffle", "native_channel_shuffle", "empty_strided",
        "new_empty_strided", "linspace", "_unsafe_view_copy", "split_with_sizes_copy", "im2col", "col2im",
        # functionalized view copies, scatters into views, padding and resampling variants
        "view_copy", "expand_copy", "permute_copy", "slice_copy", "select_copy",
        "transpose_copy", "t_copy", "unsqueeze_copy", "squeeze_copy", "alias_copy",
        "detach_copy", "_reshape_copy", "slice_scatter", "select_scatter",
        "as_strided_scatter", "diagonal_scatter", "index_fill", "repeat_interleave",
        "reflection_pad1d", "reflection_pad2d", "reflection_pad3d", "replication_pad1d",
        "replication_pad2d", "replication_pad3d", "upsample_nearest1d", "upsample_nearest3d",
        "_upsample_nearest_exact2d", "upsample_linear1d", "upsample_bicubic2d",
        "upsample_trilinear3d", "bernoulli", "randint", "randperm",
        "slice_backward", "select_backward",
    ),
    OpClass.VIEW: (
        "view", "_unsafe_view", "reshape", "permute", "transpose", "t", "numpy_T", "expand", "expand_as",
        "squeeze", "unsqueeze", "flatten", "unflatten", "slice", "select", "narrow", "split",
        "split_with_sizes", "chunk", "unbind", "alias", "detach", "as_strided", "view_as",
        "unfold", "movedim", "diagonal", "dropout", "native_dropout", "feature_dropout",
        "lift_fresh", "sym_size", "sym_numel", "sym_stride", "_assert_async", "_local_scalar_dense",
        "lift", "type_as", "to", "align_to", "tensor_split", "real", "view_as_real",
        "view_as_complex", "_reshape_alias", "_sym_constrain_range_for_size",
        "sym_constrain_range_for_size", "_assert_scalar", "item",
        "_assert_tensor_metadata", "swapaxes", "swapdims", "as_strided_", "unsafe_split",
        "unsafe_chunk", "reshape_as", "alpha_dropout", "feature_alpha_dropout", "device",
        "sym_storage_offset", "resolve_conj", "resolve_neg", "is_nonzero", "is_same_size",
    ),
}

_ELEMENTWISE = (
    "add", "sub", "mul", "div", "rsub", "neg", "abs", "pow", "sqrt", "rsqrt", "exp", "exp2",
    "expm1", "log", "log2", "log1p", "log10", "sin", "cos", "tan", "tanh", "sigmoid", "relu",
    "relu6", "gelu", "silu", "hardswish", "hardsigmoid", "hardtanh", "leaky_relu", "elu", "selu",
    "celu", "mish", "softplus", "erf", "erfc", "clamp", "clamp_min", "clamp_max", "clip",
    "minimum", "maximum", "reciprocal", "sign", "floor", "ceil", "round", "trunc", "frac",
    "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not",
    "logical_xor", "bitwise_and", "bitwise_or", "bitwise_not", "bitwise_xor", "remainder",
    "fmod", "floor_divide", "lerp", "addcmul", "addcdiv", "square", "atan", "atan2", "asin",
    "acos", "sinh", "cosh", "isnan", "isinf", "nan_to_num", "sgn", "threshold",
    "glu", "prelu", "_prelu_kernel", "logit", "hardshrink", "softshrink", "xlogy", "heaviside",
    "bitwise_left_shift", "bitwise_right_shift", "__and__", "__or__", "true_divide",
    "gelu_", "relu_", "hardtanh_", "silu_", "add_", "mul_", "div_", "sub_", "hardswish_",
    "sigmoid_", "tanh_", "clamp_", "neg_", "exp_", "copysign",
    "diff", "log_sigmoid_forward", "logaddexp", "float_power", "positive", "hypot",
    # backward of activations, and the optimizers' multi-tensor kernels
    "threshold_backward", "hardtanh_backward", "leaky_relu_backward", "tanh_backward",
    "sigmoid_backward", "gelu_backward", "silu_backward", "hardswish_backward",
    "hardsigmoid_backward", "elu_backward", "softplus_backward", "log_sigmoid_backward", "mish_backward",
    "_foreach_add", "_foreach_sub", "_foreach_mul", "_foreach_div", "_foreach_lerp", "_foreach_addcmul",
    "_foreach_addcdiv", "_foreach_sqrt", "_foreach_neg", "_foreach_maximum", "_foreach_reciprocal",
    "_foreach_sign", "_foreach_abs", "_foreach_exp", "_foreach_pow",
)

_LOOKUP: dict[str, OpClass] = {name: OpClass.ELEMENTWISE for name in _ELEMENTWISE}
for _cls, _names in _TABLE.items():
    for _n in _names:
        if _n in _LOOKUP:  # one source of truth: a name belongs to one class
            raise RuntimeError(f"aten.{_n} classified twice ({_LOOKUP[_n]} and {_cls})")
        _LOOKUP[_n] = _cls


def op_name(target: str) -> str:
    """``aten.add.Tensor`` -> ``add``; ``aten::add.Tensor`` -> ``add``; ``add`` -> ``add``."""
    t = target.replace("::", ".")
    parts = t.split(".")
    if len(parts) >= 2 and parts[0] in ("aten", "prims", "prim", "torch", "_ops"):
        return parts[1]
    return parts[0]


def inplace_base(name: str) -> str | None:
    """``add_`` -> ``add`` (an in-place op's out-of-place form); ``None`` for other names."""
    if len(name) > 1 and name.endswith("_") and not name.endswith("__"):
        return name[:-1]
    return None


def classify(target: str) -> OpClass:
    """The class of an ATen op; ``OTHER`` when it is not in the table.

    An in-place op not named in the table (``sigmoid_``) takes its out-of-place op's class.
    """
    name = op_name(target)
    cls = _LOOKUP.get(name)
    if cls is None and (base := inplace_base(name)) is not None:
        cls = _LOOKUP.get(base)
    return cls if cls is not None else OpClass.OTHER


def classified_ops() -> dict[str, OpClass]:
    """Every op name the table names, with its class (for coverage checks)."""
    return dict(_LOOKUP)
