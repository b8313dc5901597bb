"""egoframe.demo"""
