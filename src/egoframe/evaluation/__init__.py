"""egoframe.evaluation"""
