"""Stand-in for `pandas` on the GPU check machine (see ../README.md): importable, not usable."""


class DataFrame:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("pandas is a stand-in on this machine (benchmarks/gpu_stubs)")


class Series(DataFrame):
    pass
