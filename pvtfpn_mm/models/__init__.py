from . import backbones, heads, necks  # noqa: F401
