"""ecgedge.quantize"""
