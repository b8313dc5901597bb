"""egoframe.models"""
