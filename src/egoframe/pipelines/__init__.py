"""egoframe.pipelines"""
