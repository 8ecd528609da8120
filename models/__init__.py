"""ecgedge.models"""
