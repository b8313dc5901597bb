"""egoframe.training"""
