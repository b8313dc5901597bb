"""egoframe.vllm"""
