"""egoframe.study"""
