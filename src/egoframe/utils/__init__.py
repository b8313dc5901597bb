"""egoframe.utils"""
