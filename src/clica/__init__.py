"""clica: identifiable contrastive learning."""
__version__ = "0.1.0"

__all__ = ["ContrastiveICA"]


def __getattr__(name):
    # imported on first use: `import clica` stays light (torch, scikit-learn load only when needed)
    if name == "ContrastiveICA":
        from .estimator import ContrastiveICA

        return ContrastiveICA
    raise AttributeError(f"module 'clica' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
