from .top_down_fpn import TopDownFPN

__all__ = ['TopDownFPN']
