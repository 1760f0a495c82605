"""The distance kernels `||y_i − T_i(x_j)||` of the contribution measure, and the one place that
chooses between them (`dispatch.choose`): the chunked PyTorch path of `core.measures` (the
reference), the C++ CPU kernel (`fused`, `distances.cpp`) and the Triton CUDA kernel (`triton`).
"""
