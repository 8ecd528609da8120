"""ecgedge.tools"""
