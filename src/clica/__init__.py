"""clica: identifiable contrastive learning."""

__all__ = ["ContrastiveICA", "consistency"]


def __getattr__(name):
    # imported on first use: `import clica` stays light (torch, scikit-learn, importlib.metadata load when needed)
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("clica")
        except PackageNotFoundError:  # a source tree that was never installed
            return "0+unknown"
    if name == "ContrastiveICA":
        from .estimator import ContrastiveICA

        return ContrastiveICA
    if name == "consistency":
        from .metrics import consistency

        return consistency
    raise AttributeError(f"module 'clica' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__, "__version__"])
