"""egoframe.world"""
