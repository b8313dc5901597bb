"""egoframe.enrichment"""
